// A JavaScript bot's Lavalink side, driven by tests/test_lavalink_clients.py: the
// lavalink-client library (npm) against the engine, with Discord played by the test.
//
// Discord's gateway is the test's: when the library asks to join a voice channel (op 4
// through sendToShard), this script answers with the two events Discord would send
// (VOICE_STATE_UPDATE, VOICE_SERVER_UPDATE) pointing at the test's voice stand-in.
//
// It reads commands from stdin, one per line, and writes JSON lines to stdout: every
// library event it listens to ({"event": ...}) and the end of each command
// ({"done": command}). Commands: play, pitch, pause, resume, stop, exit.
import { createInterface } from "node:readline";
import { LavalinkManager } from "lavalink-client";

const env = process.env;
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const manager = new LavalinkManager({
  nodes: [{ host: env.ENGINE_HOST, port: Number(env.ENGINE_PORT),
            authorization: env.PASSWORD, id: "audiogate", retryAmount: 1 }],
  client: { id: env.USER_ID, username: "audiogate-js" },
  autoSkip: true,
  sendToShard: (guildId, payload) => {
    if (payload.op !== 4 || payload.d.channel_id === null) return;
    // Discord's answer to a voice join: the bot's voice state, then its voice server.
    manager.sendRawData({ t: "VOICE_STATE_UPDATE", d: {
      guild_id: guildId, channel_id: payload.d.channel_id, user_id: env.USER_ID,
      session_id: env.VOICE_SESSION, deaf: false, mute: false, self_deaf: false,
      self_mute: false, suppress: false } });
    manager.sendRawData({ t: "VOICE_SERVER_UPDATE", d: {
      guild_id: guildId, token: env.VOICE_TOKEN, endpoint: env.VOICE_ENDPOINT } });
  },
});

manager.nodeManager.on("connect", (node) => say({ event: "nodeConnect", id: node.id }));
manager.nodeManager.on("error", (node, error) => say({ event: "nodeError",
                                                       message: String(error) }));
manager.on("trackStart", (player, track) => say({ event: "trackStart",
                                                  title: track?.info?.title }));
manager.on("trackEnd", (player, track, payload) => say({ event: "trackEnd",
                                                         reason: payload.reason }));
// The library reports the end of the last track of its queue as the queue's end.
manager.on("queueEnd", (player, track, payload) => say({ event: "queueEnd",
                                                         reason: payload?.reason }));
manager.on("trackError", (player, track, payload) => say({ event: "trackError",
                                                           message: payload.exception?.message }));
manager.on("playerUpdate", (old, player) => say({ event: "playerUpdate",
                                                 position: player.position,
                                                 connected: player.connected }));

const connected = new Promise((resolve) => manager.nodeManager.once("connect", resolve));
await manager.init({ id: env.USER_ID, username: "audiogate-js" });
const node = await connected;
while (!node.sessionId) await new Promise((resolve) => setTimeout(resolve, 20));  // its ready
const player = manager.createPlayer({ guildId: env.GUILD, voiceChannelId: env.CHANNEL,
                                      selfDeaf: true, volume: 100 });
await player.connect();

const lines = createInterface({ input: process.stdin });
for await (const command of lines) {
  switch (command) {
    case "play": {
      const result = await player.search({ query: env.TRACK }, "tests");
      say({ event: "loaded", loadType: result.loadType, source: result.tracks[0]?.info?.sourceName });
      await player.queue.add(result.tracks[0]);
      await player.play();
      break;
    }
    case "pitch":
      await player.filterManager.setPitch(1.5);
      break;
    case "pause":
      await player.pause();
      break;
    case "resume":
      await player.resume();
      break;
    case "stop":
      await player.stopPlaying(true, false);
      break;
    case "exit":
      await player.destroy("test over", true);
      say({ done: command });
      process.exit(0);
  }
  say({ done: command });
}
