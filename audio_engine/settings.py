"""The engine's configuration: environment variables, or the same names as flags.

The Go engine's variable names are kept where they exist (``GO_API_PORT``,
``SOCKET_PATH``); everything of ours is ``ENGINE_<NAME>``. ``python -m audio_engine
--help`` lists every setting with its variable and default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audio_engine.sources.url_policy import IPAddress, parse_endpoints
from audio_engine.wire.ordering import TimingPolicy
from audio_engine.wire.pressure import CpuPressure
from protocol import DEFAULT_API_PORT, DEFAULT_SOCKET_PATH

__all__ = ["EngineSettings"]


def _go_name(name: str) -> AliasChoices:
    return AliasChoices(name.lower(), name)


class EngineSettings(BaseSettings):
    """Every knob of the engine process."""

    model_config = SettingsConfigDict(
        env_prefix="ENGINE_",
        extra="ignore",
        cli_prog_name="python -m audio_engine",
        cli_kebab_case=True,
        cli_implicit_flags=True,
    )

    go_api_port: int = Field(
        DEFAULT_API_PORT,
        ge=0,
        le=65535,
        validation_alias=_go_name("GO_API_PORT"),
        description="HTTP control API port [env GO_API_PORT]",
    )
    api_host: str = Field(
        "127.0.0.1",
        description="address the HTTP API binds to [env ENGINE_API_HOST]",
    )
    socket_path: Path = Field(
        Path(DEFAULT_SOCKET_PATH),
        validation_alias=_go_name("SOCKET_PATH"),
        description="Unix socket that carries audio packets and events [env SOCKET_PATH]",
    )
    socket_mode: str = Field(
        "660",
        pattern=r"^0?[0-7]{3}$",
        description="permissions of the socket file, octal [env ENGINE_SOCKET_MODE]",
    )
    tcp_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="also serve the socket framing on this TCP port (0: any free port), "
        "for gateways on other hosts; unset (the default): Unix socket only. A TCP "
        "consumer must send a hello carrying ENGINE_NODE_TOKEN before it gets any byte "
        "[env ENGINE_TCP_PORT]",
    )
    tcp_host: str = Field(
        "127.0.0.1",
        description="address the TCP socket binds to (0.0.0.0 or a private address to "
        "reach it from other machines) [env ENGINE_TCP_HOST]",
    )
    node_token: SecretStr | None = Field(
        None,
        description="token a TCP consumer must send in its hello ('token' key); "
        "unset: ENGINE_API_TOKEN. TCP needs one of them [env ENGINE_NODE_TOKEN]",
    )
    hello_timeout: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds a TCP consumer has, from connecting (TLS handshake "
        "included), to send a hello with a valid token before it is closed "
        "[env ENGINE_HELLO_TIMEOUT]",
    )
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) for TLS on the TCP socket; with "
        "ENGINE_TLS_KEY, TCP consumers must speak TLS [env ENGINE_TLS_CERT]",
    )
    tls_key: Path | None = Field(
        None,
        description="PEM private key of ENGINE_TLS_CERT [env ENGINE_TLS_KEY]",
    )
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description="engine worker processes, each with its own share of the sessions "
        "and its own clock behind the one HTTP port and socket; 0: the cores the process "
        "may run on (its CPU affinity) [env ENGINE_WORKERS]",
    )
    first_audio_wait: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds an accepted play's source may wait for its turn to open "
        "(while a burst of plays opens) before the play fails with an error event "
        "saying the engine is too busy: an accepted play is never silent for long "
        "[env ENGINE_FIRST_AUDIO_WAIT]",
    )
    cpu_budget: float = Field(
        0.0,
        ge=0,
        description="cores this engine may use, for admission by load; 0: the cores the "
        "process may run on (its CPU affinity). Give each of several engines on one "
        "machine its share [env ENGINE_CPU_BUDGET]",
    )
    max_load: float = Field(
        0.85,
        gt=0,
        le=1.0,
        description="share of ENGINE_CPU_BUDGET a new play may bring the engine to, its "
        "projected cost included (after stepping the Opus complexity down to 5); past "
        "it the play is refused with 503 and Retry-After, so the sessions already "
        "playing keep their timing; 1 turns it off [env ENGINE_MAX_LOAD]",
    )
    max_sessions: int = Field(
        1000,
        ge=1,
        description="most sessions held at once; a play beyond it is refused with 429 "
        "[env ENGINE_MAX_SESSIONS]",
    )
    max_resolutions: int = Field(
        8,
        ge=1,
        description="most URL resolutions (yt-dlp, probes) running at once, one worker "
        "process each; more wait [env ENGINE_MAX_RESOLUTIONS]",
    )
    resolutions_per_caller: int = Field(
        0,
        ge=0,
        description="most of those one caller (a session id, or the X-Caller header of a "
        "catalogue request) may hold; 0: half of ENGINE_MAX_RESOLUTIONS "
        "[env ENGINE_RESOLUTIONS_PER_CALLER]",
    )
    resolve_timeout: float = Field(
        20.0,
        gt=0,
        description="seconds one resolution may run before its worker process is killed; "
        "also the longest wait for a free slot [env ENGINE_RESOLVE_TIMEOUT]",
    )
    resolve_memory_mb: int = Field(
        512,
        ge=64,
        description="data memory limit of each resolution worker process, MB "
        "[env ENGINE_RESOLVE_MEMORY_MB]",
    )
    resolve_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        description="most bytes one resolution may download (pages, API calls) "
        "[env ENGINE_RESOLVE_MAX_BYTES]",
    )
    open_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds allowed to open a media source [env ENGINE_OPEN_TIMEOUT]",
    )
    read_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds a source read may block before it counts as broken "
        "[env ENGINE_READ_TIMEOUT]",
    )
    source_retries: int = Field(
        3,
        ge=0,
        description="times a broken source is reopened from its position before the "
        "session fails; the count starts again after 30 s of audio without a break "
        "[env ENGINE_SOURCE_RETRIES]",
    )
    index_memory: int = Field(
        32 * 1024,
        ge=0,
        description="bytes of seek index FFmpeg keeps per source (its 'indexmem'; "
        "without a cap a playing session grows ~1.2 KB/s) [env ENGINE_INDEX_MEMORY]",
    )
    stuck_threshold: float = Field(
        10.0,
        gt=0,
        description="seconds without a new frame from the source before a playing "
        "session is declared stuck and ended [env ENGINE_STUCK_THRESHOLD]",
    )
    idle_timeout: float = Field(
        1800.0,
        gt=0,
        description="seconds after which a session nobody touched through the API is "
        "removed [env ENGINE_IDLE_TIMEOUT]",
    )
    max_body_bytes: int = Field(
        16 * 1024,
        ge=256,
        description="largest accepted HTTP request body [env ENGINE_MAX_BODY_BYTES]",
    )
    max_url_length: int = Field(
        4096,
        ge=16,
        description="longest accepted media URL [env ENGINE_MAX_URL_LENGTH]",
    )
    opus_complexity: int = Field(
        10,
        ge=0,
        le=10,
        description="libopus encoder complexity, 0 (fastest) to 10 (best) "
        "[env ENGINE_OPUS_COMPLEXITY]",
    )
    opus_encoder: Literal["opuslib", "pyav"] = Field(
        "opuslib",
        description="libopus binding used to encode: opuslib (system libopus, faster in "
        "bench/opus_encode.py) or pyav (FFmpeg's wrapper) [env ENGINE_OPUS_ENCODER]",
    )
    codec_workers: int = Field(
        0,
        ge=0,
        description="threads decoding and encoding audio in each worker process; 0: "
        "the core count divided among the workers, at least one "
        "[env ENGINE_CODEC_WORKERS]",
    )
    read_workers: int = Field(
        1,
        ge=1,
        description="threads reading (demuxing) playing sources; one is fastest, since "
        "demuxing with several threads is spent fighting for the GIL "
        "[env ENGINE_READ_WORKERS]",
    )
    open_workers: int = Field(
        4,
        ge=1,
        description="threads opening, seeking and closing sources [env ENGINE_OPEN_WORKERS]",
    )
    io_workers_max: int = Field(
        64,
        ge=1,
        description="most threads of each of those pools: extra ones start only while "
        "all others are blocked on slow sources [env ENGINE_IO_WORKERS_MAX]",
    )
    consumer_queue_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        description="bytes a socket consumer may have queued before its audio is "
        "dropped [env ENGINE_CONSUMER_QUEUE_BYTES]",
    )
    consumer_stall_seconds: float = Field(
        5.0,
        gt=0,
        description="seconds a consumer may stay over its queue limit before it is "
        "disconnected [env ENGINE_CONSUMER_STALL_SECONDS]",
    )
    loudness_target: float | None = Field(
        None,
        ge=-40.0,
        le=-5.0,
        description="default loudness normalization: every session plays at this "
        "integrated loudness (LUFS, EBU R128) unless its filters set their own "
        "'loudness' (or switch it off with \"loudness\": null); unset: off "
        "[env ENGINE_LOUDNESS_TARGET]",
    )
    first_audio_margin_ms: float = Field(
        80.0,
        ge=0,
        le=2000,
        description="wall-clock milliseconds between a play's ready and its first audio "
        "while a consumer that sent no 'order any' hello (the Node front) is connected; "
        "it needs that long to handle ready before audio is dropped "
        "(docs/performance.md, 'Timing margins') [env ENGINE_FIRST_AUDIO_MARGIN_MS]",
    )
    event_margin_ms: float = Field(
        60.0,
        ge=0,
        le=2000,
        description="wall-clock milliseconds between an HTTP reply and the events it "
        "caused (ready, error, a stop's finished) while such a consumer is connected "
        "[env ENGINE_EVENT_MARGIN_MS]",
    )
    clock_priority: int = Field(
        10,
        ge=0,
        le=99,
        description="real-time (round-robin) priority of the thread that runs the 20 ms "
        "clock in each engine process, so a busy machine cannot delay a tick; 0: normal "
        "scheduling. Needs CAP_SYS_NICE (root, --cap-add SYS_NICE, or LimitRTPRIO= in "
        "systemd); without it the engine runs normally and /health says why "
        "[env ENGINE_CLOCK_PRIORITY]",
    )
    shutdown_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds allowed for a graceful shutdown [env ENGINE_SHUTDOWN_TIMEOUT]",
    )
    http_request_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds an HTTP connection has to deliver each whole request; "
        "half-sent requests are closed after it [env ENGINE_HTTP_REQUEST_TIMEOUT]",
    )
    api_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("api_token", "ENGINE_API_TOKEN"),
        description="when set, every API call but /health needs 'Authorization: Bearer "
        "<token>' [env ENGINE_API_TOKEN]",
    )
    lavalink_server_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("lavalink_server_password", "LAVALINK_SERVER_PASSWORD"),
        description="when set, the engine is also a Lavalink v4 node on its HTTP port "
        "(/v4/..., /version) and clients must send this password in 'Authorization' "
        "(the variable Lavalink itself reads; docs/lavalink.md); unset: no Lavalink API "
        "[env LAVALINK_SERVER_PASSWORD]",
    )
    lavalink_player_update_interval: int = Field(
        5,
        ge=1,
        le=60,
        validation_alias=AliasChoices("lavalink_player_update_interval",
                                      "LAVALINK_SERVER_PLAYERUPDATEINTERVAL"),
        description="seconds between the playerUpdate messages of a Lavalink player that "
        "plays (Lavalink's lavalink.server.playerUpdateInterval) "
        "[env LAVALINK_SERVER_PLAYERUPDATEINTERVAL]",
    )
    media_dir: Path | None = Field(
        None,
        description="local files may be played only from under this directory; unset: "
        "no local files [env ENGINE_MEDIA_DIR]",
    )
    allow_private_networks: bool = Field(
        False,
        description="allow network destinations that are not global addresses (loopback, "
        "private, link-local, carrier-grade NAT, ...); off: such destinations are refused "
        "at every hop [env ENGINE_ALLOW_PRIVATE_NETWORKS]",
    )
    allowed_endpoints: str = Field(
        "",
        description="comma-separated ADDRESS:PORT pairs reachable although their address "
        "is not global, e.g. '10.0.0.5:8000,[fd00::5]:80' [env ENGINE_ALLOWED_ENDPOINTS]",
    )
    log_level: str = Field("INFO", description="log level [env ENGINE_LOG_LEVEL]")
    log_json: bool = Field(False, description="write logs as JSON lines [env ENGINE_LOG_JSON]")

    @field_validator("allowed_endpoints")
    @classmethod
    def _endpoints_parse(cls, value: str) -> str:
        parse_endpoints(value)
        return value

    @model_validator(mode="after")
    def _tcp_needs_a_token(self) -> EngineSettings:
        if self.tcp_port is not None and self.consumer_token is None:
            raise ValueError(
                "ENGINE_TCP_PORT is set but neither ENGINE_NODE_TOKEN nor ENGINE_API_TOKEN is: "
                "a TCP socket needs a token"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("ENGINE_TLS_CERT and ENGINE_TLS_KEY go together: set both")
        return self

    @property
    def timing(self) -> TimingPolicy:
        """The two wall-clock margins of the timing contract, in seconds, stretched
        by the host's CPU pressure (one reader of it per call: call once per process)."""
        return TimingPolicy(event_margin=self.event_margin_ms / 1000,
                            first_audio_margin=self.first_audio_margin_ms / 1000,
                            pressure=CpuPressure().share)

    @property
    def consumer_token(self) -> str | None:
        """The token TCP consumers present: ``node_token``, else ``api_token``."""
        secret = self.node_token or self.api_token
        return secret.get_secret_value() if secret is not None and secret.get_secret_value() \
            else None

    @property
    def lavalink_password(self) -> str | None:
        """The Lavalink API's password, or None when that API is off."""
        secret = self.lavalink_server_password
        return secret.get_secret_value() or None if secret is not None else None

    @property
    def endpoints(self) -> frozenset[tuple[IPAddress, int]]:
        """``allowed_endpoints`` parsed."""
        return parse_endpoints(self.allowed_endpoints)

    @property
    def per_caller_resolutions(self) -> int:
        """``resolutions_per_caller``, with 0 meaning half of the slots."""
        return self.resolutions_per_caller or max(1, self.max_resolutions // 2)

    @property
    def socket_mode_bits(self) -> int:
        """``socket_mode`` as permission bits."""
        return int(self.socket_mode, 8)
