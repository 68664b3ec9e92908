"""Which engine play is the current track's, and how far it got: the play binding.

Every change of track is a new *play* (a new ``nonce``). The binding follows that play
through its phases, written as a table (``TRANSITIONS``) in the style of h11's
``_state.py``: an input the table does not list for the current phase is a bug of ours
and raises ``PhaseError``; nothing moves a binding but ``fire``.

::

    IDLE ──PLAY──► WANTED ──SEND──► SENT ──ANSWER──► STARTING ──READY──► STREAMING
                     │                 └──REFUSE──► FAILED        │  ▲             │
                     └──JOIN──► JOINING ──READY──► STREAMING       │  └──UNREADY───┤
                                                   FINISH ► ENDED · ERROR ► FAILED · LOSE ► LOST
    PARKED: a track, nothing at the engine, nothing wanted (restored; lost while paused)

PLAY, PARK and CLEAR are accepted in every phase (a command may come at any time); the
core resolves ENDED, FAILED and LOST at once (the queue decides: PLAY the next track,
CLEAR at the end, PARK a paused one).

Engine events reach the table only once they are matched to the current play
(``match``). Our engine tags each play's events with a play id: events of a play whose
answer has not come yet are kept until it comes, events of other plays are ignored. An
engine without play ids (the Go engine) is matched by order and counting: a play or stop
that replaces a live stream expects that stream's end (``expected_terminals``), and a
replaced stream that had not sent its ``ready`` may still send it, then its end soon
after (``unconfirmed_replaced``, told apart by how little audio followed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.player.errors import PhaseError
from protocol import EventType, FinishReason

__all__ = [
    "BOUND",
    "LOST_STREAM_REASONS",
    "STALE_STREAM_PACKETS",
    "TRANSITIONS",
    "BindingState",
    "EngineEvent",
    "NextHeld",
    "Phase",
    "PlayBinding",
    "Trigger",
]

#: A ``finished`` arriving with fewer audio packets than this since its ``ready``
#: is taken, on an engine without play ids, as the end of a stream we replaced
#: before it had started, not as the new track ending. 25 packets = 0.5 s.
STALE_STREAM_PACKETS = 25
#: Events kept for plays whose answer has not come yet: the latest 8 play ids (a
#: burst of commands sends one play per settled state, so a few are in flight).
_KEPT_PLAYS = 8

#: ``finished`` reasons that end the stream but not the track: the engine shut down,
#: or dropped a session nobody touched.
LOST_STREAM_REASONS = frozenset({FinishReason.SHUTDOWN, FinishReason.IDLE})


class Phase(StrEnum):
    """How far the current track's play got."""

    #: No current track.
    IDLE = "idle"
    #: A current track with nothing at the engine, and no play wanted until a command
    #: (a queue restored from the store, or a paused stream the engine lost).
    PARKED = "parked"
    #: A new play of the current track is wanted; not sent yet.
    WANTED = "wanted"
    #: Its play was sent; the engine's answer has not come.
    SENT = "sent"
    #: The engine took the play; its ``ready`` has not come.
    STARTING = "starting"
    #: The engine joined the track to the stream without a play (gapless); its
    #: ``ready`` has not come.
    JOINING = "joining"
    #: ``ready`` came: the track's audio flows.
    STREAMING = "streaming"
    #: ``finished`` came (or the engine says the stream is over): the queue decides.
    ENDED = "ended"
    #: ``error`` came, or the engine refused the play.
    FAILED = "failed"
    #: The engine lost the stream before its end (shutdown, idle, restart).
    LOST = "lost"


class Trigger(StrEnum):
    """What moves a binding: the core's decisions, the shell's calls, and engine
    events (``EngineEvent.trigger``)."""

    #: A new play of the current track is wanted (a command, or the queue moving on).
    PLAY = "play"
    #: Keep the track with nothing at the engine.
    PARK = "park"
    #: No current track any more (stop, or the end of the queue).
    CLEAR = "clear"
    #: The shell sends the play (or, with no track, the stop).
    SEND = "send"
    #: The engine took the play.
    ANSWER = "answer"
    #: The engine refused the play.
    REFUSE = "refuse"
    #: The engine joined the track the queue moved to (gapless): no play is sent.
    JOIN = "join"
    #: ``ready`` (or the engine says the play streams: its ``ready`` was lost).
    READY = "ready"
    #: ``finished`` (end, stopped, replaced, or no reason), or the engine says it is over.
    FINISH = "finish"
    #: ``error``.
    ERROR = "error"
    #: ``finished`` with reason ``shutdown`` or ``idle``, or the engine lost the stream.
    LOSE = "lose"
    #: Without play ids: the ``ready`` taken was a replaced stream's.
    UNREADY = "unready"


P, T = Phase, Trigger

#: Phase -> input -> next phase. An input missing here is impossible in that phase.
TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    P.IDLE: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
             T.SEND: P.IDLE},  # a stop
    P.PARKED: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE},
    P.WANTED: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
               T.SEND: P.SENT, T.JOIN: P.JOINING},
    P.SENT: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
             T.SEND: P.SENT,  # sent again after the engine could not be reached
             T.ANSWER: P.STARTING, T.REFUSE: P.FAILED},
    P.STARTING: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
                 T.READY: P.STREAMING, T.FINISH: P.ENDED, T.ERROR: P.FAILED,
                 T.LOSE: P.LOST},
    P.JOINING: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
                T.READY: P.STREAMING, T.FINISH: P.ENDED, T.ERROR: P.FAILED,
                T.LOSE: P.LOST},
    P.STREAMING: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE,
                  T.READY: P.STREAMING,  # without play ids: a later ready restarts the clock
                  T.UNREADY: P.STARTING, T.FINISH: P.ENDED, T.ERROR: P.FAILED,
                  T.LOSE: P.LOST},
    P.ENDED: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE},
    P.FAILED: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE},
    P.LOST: {T.PLAY: P.WANTED, T.PARK: P.PARKED, T.CLEAR: P.IDLE},
}
del P, T

#: Phases in which the engine has the current play: its events are matched to it.
BOUND = frozenset({Phase.STARTING, Phase.JOINING, Phase.STREAMING})


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """An engine event as the binding reads it (the shell builds it from the
    socket's ``protocol.Event``).

    Attributes:
        type: ready, finished or error.
        play_id: our engine's play id (None from an engine without play ids).
        message: an error's text.
        reason: a ``finished``'s reason (None: none given, or one we do not know).
        packets_since_ready: audio packets of the session since its last ``ready``.
    """

    type: EventType
    play_id: int | None = None
    message: str = ""
    reason: FinishReason | None = None
    packets_since_ready: int = 0

    @property
    def trigger(self) -> Trigger:
        """The binding input this event is."""
        match self.type:
            case EventType.READY:
                return Trigger.READY
            case EventType.ERROR:
                return Trigger.ERROR
            case EventType.FINISHED if self.reason in LOST_STREAM_REASONS:
                return Trigger.LOSE
            case _:
                return Trigger.FINISH


@dataclass(frozen=True, slots=True)
class NextHeld:
    """The next track the engine holds: the play (*nonce*) it follows, its URL and
    the play id its events carry."""

    nonce: int
    url: str
    play_id: int


@dataclass(frozen=True, slots=True)
class BindingState:
    """A copy of a binding's matching state (to put it back after a failed "play
    now": the engine never replaced the interrupted stream)."""

    phase: Phase
    play_id: int | None
    expected_terminals: int
    unconfirmed_replaced: int


class PlayBinding:
    """The current play's phase and the matching of engine events to plays.

    Attributes:
        phase: where the current play is (``TRANSITIONS``).
        nonce: the current play's number; every new play (or clear) bumps it.
        play_id: the engine's id of the current play (None: not known, or an engine
            without play ids).
        joined: the current play started by a gapless join (no play was sent).
        next: the next track the engine holds for the current play.
    """

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.nonce = 0
        self.play_id: int | None = None
        self.joined = False
        self.next: NextHeld | None = None
        #: What the engine still plays from before the current play, until the next
        #: send replaces it: STREAMING, STARTING, or None (nothing live).
        self._replacing: Phase | None = None
        #: Without play ids: ``finished``/``error`` events our own calls will cause.
        self.expected_terminals = 0
        #: Without play ids: replaced streams whose ``ready`` may still arrive.
        self.unconfirmed_replaced = 0
        #: Events of plays whose answer has not come (by play id).
        self._kept: dict[int, list[EngineEvent]] = {}
        #: The play id of a stream the engine keeps playing until the current play has
        #: audio (a "play now" sent as a replacement): its events are kept, for when
        #: the replacement fails and that stream is taken back (``reinstate``).
        self.live_play: int | None = None
        #: Without play ids: events that came while the play was on its way.
        self._early: list[EngineEvent] = []

    def fire(self, trigger: Trigger) -> Phase:
        """Move to the phase *trigger* leads to; returns it.

        Raises:
            PhaseError: *trigger* is impossible in the current phase (nothing changes).
        """
        try:
            phase = TRANSITIONS[self.phase][trigger]
        except KeyError as exc:
            raise PhaseError(f"{trigger.value} is impossible while the play is "
                             f"{self.phase.value}") from exc
        self.phase = phase
        return phase

    @property
    def bound(self) -> bool:
        """The engine has the current play (its events are matched to it)."""
        return self.phase in BOUND

    # -- the core's decisions -------------------------------------------------------------

    def new_play(self) -> int:
        """A new play of the current track is wanted (PLAY); returns its nonce."""
        self._leave(Trigger.PLAY)
        return self.nonce

    def clear(self) -> None:
        """No current track any more (CLEAR); the engine's stream, if any, is to be
        stopped."""
        self._leave(Trigger.CLEAR)

    def park(self) -> None:
        """Keep the current track with nothing at the engine (PARK); the nonce stays
        (nothing needs sending)."""
        self.fire(Trigger.PARK)
        self.play_id = None
        self.joined = False
        self.forget_streams()

    def _leave(self, trigger: Trigger) -> None:
        self.live_play = None
        if self.phase is Phase.STREAMING:
            self._replacing = Phase.STREAMING
        elif self.phase in BOUND:
            self._replacing = Phase.STARTING
        self.fire(trigger)
        self.nonce += 1
        self.play_id = None
        self.joined = False
        self.next = None

    def stream_over(self) -> None:
        """The engine's stream ended (its end, an error): no replaced stream's
        ``ready`` can come any more."""
        self.unconfirmed_replaced = 0

    def forget_streams(self) -> None:
        """The engine has no stream of ours any more (it lost it): nothing is
        expected from it, nothing kept for it."""
        self._replacing = None
        self.expected_terminals = 0
        self.unconfirmed_replaced = 0
        self._kept.clear()
        self._early.clear()
        self.next = None
        self.live_play = None

    def keep_live(self, play_id: int) -> None:
        """The current play is sent as a replacement that the engine makes only once
        it has audio: play *play_id* streams on until then, and on if it fails."""
        self.live_play = play_id

    def replaced_live(self) -> None:
        """The replacement has audio: the stream it replaced is over."""
        if self.live_play is not None:
            self._kept.pop(self.live_play, None)
            self.live_play = None

    # -- the shell's calls ----------------------------------------------------------------

    def send(self, nonce: int) -> None:
        """The shell is about to send *nonce*'s play (or, with no track, the stop).

        Without play ids: a live stream it replaces will end because of this call,
        so its ``finished``/``error`` is expected; one that had not sent its
        ``ready`` may still send it.

        Raises:
            PhaseError: *nonce* is not the current play, or nothing is to be sent.
        """
        if nonce != self.nonce:
            raise PhaseError(f"play {nonce} is sent but play {self.nonce} is current")
        self.fire(Trigger.SEND)
        if self._replacing is Phase.STREAMING:
            self.expected_terminals += 1
        elif self._replacing is Phase.STARTING:
            self.unconfirmed_replaced += 1
        self._replacing = None
        self._early.clear()

    def answer(self, nonce: int, play_id: int | None) -> list[EngineEvent] | None:
        """The engine took *nonce*'s play and named it *play_id* (None for engines
        without play ids). Returns its events that came first, to apply in order;
        None when the answer is stale (another play is current, or it was not sent)."""
        if nonce != self.nonce or self.phase is not Phase.SENT:
            return None
        self.fire(Trigger.ANSWER)
        self.play_id = play_id
        if play_id is not None:
            early = self._kept.pop(play_id, [])
            # Only the events of a stream the engine keeps playing stay kept.
            self._kept = {k: v for k, v in self._kept.items() if k == self.live_play}
        else:
            early = list(self._early)
        self._early.clear()
        return early

    def refuse(self, nonce: int) -> bool:
        """The engine refused *nonce*'s play; False when that play is not current."""
        if nonce != self.nonce:
            return False
        self.fire(Trigger.REFUSE)
        return True

    def join(self, play_id: int) -> list[EngineEvent]:
        """The engine joined the current track to the stream as play *play_id*
        (gapless, no play sent). Returns that play's events that came first."""
        self.fire(Trigger.JOIN)
        self.play_id = play_id
        self.joined = True
        early = self._kept.pop(play_id, [])
        self._kept.clear()
        self._early.clear()
        return early

    def hold_next(self, nonce: int, url: str, play_id: int) -> None:
        """The engine holds *url* as the next play *play_id* after *nonce*'s (kept
        only while that play streams)."""
        if nonce == self.nonce and self.phase is Phase.STREAMING:
            self.next = NextHeld(nonce, url, play_id)

    def kept_ready(self, play_id: int) -> bool:
        """A ``ready`` of *play_id* came before anything claimed it."""
        return any(e.type is EventType.READY for e in self._kept.get(play_id, ()))

    # -- engine events --------------------------------------------------------------------

    def match(self, event: EngineEvent) -> Trigger | None:
        """The input *event* is for the current play, or None when it is not (kept
        for a play whose answer is on its way, or ignored: a replaced play's).
        ``Trigger.UNREADY`` says the ``ready`` taken was a replaced stream's (the
        binding no longer counts that stream; the core stops its clock)."""
        if event.play_id is not None:
            if event.play_id == self.live_play:
                self._keep(event)  # the stream a replacement may give back
                return None
            if self.play_id is None or not self.bound:
                self._keep(event)
                return None
            if event.play_id != self.play_id:
                if self.next is not None and event.play_id == self.next.play_id:
                    self._keep(event)  # the next track's, before the join
                return None
            return event.trigger
        if event.type is not EventType.READY:
            if self.expected_terminals > 0:
                self.expected_terminals -= 1
                return None
            if (self.unconfirmed_replaced > 0
                    and event.packets_since_ready < STALE_STREAM_PACKETS):
                self.unconfirmed_replaced -= 1
                self._replacing = None
                return Trigger.UNREADY
        if self.bound:
            return event.trigger
        if self.phase is Phase.SENT:
            self._early.append(event)
        return None

    def _keep(self, event: EngineEvent) -> None:
        assert event.play_id is not None
        self._kept.setdefault(event.play_id, []).append(event)
        if len(self._kept) > _KEPT_PLAYS:
            self._kept.pop(min(self._kept))

    # -- a failed "play now" --------------------------------------------------------------

    def state(self) -> BindingState:
        """A copy of the matching state, for ``reinstate``."""
        return BindingState(self.phase, self.play_id, self.expected_terminals,
                            self.unconfirmed_replaced)

    def reinstate(self, saved: BindingState) -> tuple[list[EngineEvent], bool]:
        """The engine refused a "play now": the interrupted play (*saved*) never
        stopped there, so take it back as it was, under the current nonce. This is
        the one move outside ``TRANSITIONS`` (from FAILED back to *saved*'s phase).

        Returns the interrupted play's events that came meanwhile (to apply), and
        whether its stream ended meanwhile (without play ids, an end absorbed by the
        refused play's count)."""
        if saved.phase not in BOUND | {Phase.PARKED}:
            raise PhaseError(f"a play that was {saved.phase.value} cannot be reinstated")
        if saved.play_id is not None:
            pending = self._kept.pop(saved.play_id, [])
            self._kept.clear()
            ended = False
        else:
            expected = saved.expected_terminals + (1 if saved.phase is Phase.STREAMING else 0)
            ended = self.expected_terminals < expected
            pending = [e for e in self._early if e.type is not EventType.READY]
        self._early.clear()
        self.phase = saved.phase
        self.play_id = saved.play_id
        self.live_play = None
        self.expected_terminals = saved.expected_terminals
        self.unconfirmed_replaced = saved.unconfirmed_replaced
        self._replacing = None
        return pending, ended
