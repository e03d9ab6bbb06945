"""The recording loop against the real sim and a real store: operator controls, the
writer thread's overflow handling, writer failures, replay, and the pipeline's shorthand."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from robot_rl.config.sim import SimConfig
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.sim.env import RobotEnv
from robot_rl.teleop.devices import KeyboardDevice, ReplayDevice, scripted_device
from robot_rl.teleop.events import EventLogSource
from robot_rl.teleop.recorder import Recorder, RecorderError, record_episodes


def outcomes(summary):
    return [(r.outcome, r.seed, r.steps) for r in summary.episodes]


def check_episode_shape(store: EpisodeStore):
    """Every committed episode ends (and only ends) on its last row."""
    for i in range(store.n_episodes):
        ep = store.episode(i)
        done = ep["terminated"] | ep["truncated"]
        assert done[-1] and not done[:-1].any(), f"episode {i}"


def test_discard_rerecord_and_marks(reach_env, make_store, prov, keys):
    store = make_store()
    events = keys(
        (0, "+w"), (0, "return"),  # hold w; start seed 0
        (3, "r"),  # re-record: drop after 3 steps, same seed
        (5, "return"), (8, "y"), (10, "return"),  # start, mark success, stop: kept
        (12, "return"), (14, "backspace"),  # start seed 1, discard: next seed
        (16, "return"), (19, "n"), (20, "return"),  # seed 2, mark failure, stop: kept
        (21, "escape"),
    )  # fmt: skip
    kb = KeyboardDevice(EventLogSource(events), speed=0.5)
    summary = Recorder(
        reach_env, kb, store, provenance=prov, seed=0, realtime=False, review=False
    ).run()

    assert outcomes(summary) == [
        ("rerecorded", 0, 3),
        ("committed", 0, 5),
        ("discarded", 1, 2),
        ("committed", 2, 4),
    ]
    kept = [r for r in summary.episodes if r.outcome == "committed"]
    assert [(r.success, r.label_source, r.store_index) for r in kept] == [
        (True, "operator", 0),
        (False, "operator", 1),
    ]
    assert summary.n_episodes == 2 and summary.n_discarded == 2 and summary.n_steps == 9

    store = EpisodeStore.open(store.path)
    assert store.validate().ok
    assert store.n_episodes == 2 and store.n_steps == 9  # dropped rows never show
    assert list(np.diff(store.episode_ends, prepend=0)) == [5, 4]
    check_episode_shape(store)
    for i, seed, label in ((0, 0, True), (1, 2, False)):
        ep = store.episode(i)
        assert ep["truncated"][-1] and not ep["terminated"].any()  # STOP truncates
        np.testing.assert_allclose(ep["action"], [[0.5, 0, 0, 1]] * len(ep["action"]))
        # A re-recorded episode restarts from its seed; a discarded one moves on.
        first_obs, _ = reach_env.reset(seed=seed)
        for k, v in first_obs.items():
            np.testing.assert_array_equal(ep[k][0], v)
        p = store.provenance(i)
        assert p.success is label and p.source == "teleop" and p.operator == "op-test"
        assert p.episode_id == kept[i].episode_id
        assert np.all(np.diff(ep["timestamp"]) >= 0) and ep["timestamp"][0] > 1e9


def test_review_lets_the_operator_label_and_quit_discards_a_running_episode(
    reach_env, make_store, prov, keys
):
    store = make_store()
    events = keys(
        (0, "return"),  # start; the episode ends itself after 3 steps (max_episode_steps)
        (3, "y"), (4, "return"),  # in review: mark success, keep
        (5, "return"), (8, "r"),  # seed 1 ends at step 3, review: re-record it
        (9, "return"), (10, "escape"),  # quit mid-episode: dropped
    )  # fmt: skip
    summary = Recorder(
        reach_env,
        KeyboardDevice(EventLogSource(events)),
        store,
        provenance=prov,
        seed=0,
        realtime=False,
        review=True,
        max_episode_steps=3,
    ).run()
    assert outcomes(summary) == [("committed", 0, 3), ("rerecorded", 1, 3), ("quit", 1, 1)]
    store = EpisodeStore.open(store.path)
    assert store.n_episodes == 1 and store.n_steps == 3
    assert store.provenance(0).success is True
    assert store.episode(0)["truncated"].tolist() == [False, False, True]


def test_quit_in_review_keeps_the_finished_episode(reach_env, make_store, prov, keys):
    store = make_store()
    events = keys((0, "return"), (4, "escape"))
    summary = Recorder(
        reach_env,
        KeyboardDevice(EventLogSource(events)),
        store,
        provenance=prov,
        realtime=False,
        review=True,
        max_episode_steps=2,
    ).run()
    assert outcomes(summary) == [("committed", 0, 2)]
    assert EpisodeStore.open(store.path).n_episodes == 1


def test_controls_outside_an_episode_change_nothing(reach_env, make_store, prov, keys):
    store = make_store()
    # stop / re-record / labels while waiting are ignored; discard while waiting skips
    # to the next seed.
    events = keys((0, "y"), (1, "r"), (2, "backspace"), (3, "return"), (5, "return"))
    events += keys((6, "escape"))
    summary = Recorder(
        reach_env,
        KeyboardDevice(EventLogSource(events)),
        store,
        provenance=prov,
        seed=10,
        realtime=False,
        review=False,
    ).run()
    assert outcomes(summary) == [("committed", 11, 2)]
    assert EpisodeStore.open(store.path).provenance(0).success is False  # env label


# --- the writer thread ------------------------------------------------------------------


class SlowStore:
    """Wraps a store: the first ``slow_appends`` block appends take ``delay_s`` each."""

    def __init__(self, store, slow_appends, delay_s, fail_on_episode=None, fail_discard=False):
        self.store, self.slow, self.delay = store, slow_appends, delay_s
        self.fail_on_episode = fail_on_episode
        self.fail_discard = fail_discard
        self.episodes = 0
        self.appended = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def begin_episode(self):
        self.episodes += 1
        return SlowWriter(self.store.begin_episode(), self, self.episodes)


class SlowWriter:
    def __init__(self, writer, parent, number):
        self.writer, self.parent, self.number = writer, parent, number

    def append(self, frames):
        if self.parent.fail_on_episode == self.number:
            raise OSError(28, "No space left on device")
        if self.parent.slow > 0:
            self.parent.slow -= 1
            time.sleep(self.parent.delay)
        self.parent.appended.append(len(frames["action"]))
        self.writer.append(frames)

    def commit(self, provenance):
        return self.writer.commit(provenance)

    def discard(self):
        if self.parent.fail_discard:
            raise OSError(5, "Input/output error")
        self.writer.discard()


def scripted_recorder(env, store, prov, **kw):
    return Recorder(
        env,
        scripted_device("reach"),
        store,
        provenance=EpisodeProvenance(**{**prov.__dict__, "source": "scripted"}),
        seed=0,
        **kw,
    )


def overflowing_session(reach_env, make_store, prov, **kw):
    """Two reach episodes in real time at 50 Hz, one row per block, 4 blocks of queue:
    one append that takes 1.5 s overflows the queue (every episode has >= 7 rows). (An
    episode starts only once the queue is at most half full, so a backlog does not spill
    into the next.) Returns (summary, the store reopened, a reference store recorded
    without overflow)."""
    ref_store = make_store("ref.zarr")
    scripted_recorder(reach_env, ref_store, prov, n_episodes=2).run()
    ref_store = EpisodeStore.open(ref_store.path)
    store = make_store()
    slow = SlowStore(store, slow_appends=1, delay_s=1.5)
    summary = scripted_recorder(
        reach_env,
        slow,
        prov,
        n_episodes=2,
        realtime=True,
        control_hz=50.0,
        queue_blocks=4,
        block_steps=1,
        max_consecutive_overflows=10,
        **kw,
    ).run()
    return summary, EpisodeStore.open(store.path), ref_store


def test_overflow_keeps_the_episode_and_flags_its_gaps(reach_env, make_store, prov):
    # Behaviour change: an overflowed episode used to be discarded and recorded again;
    # robot and bridge episodes cannot be, so it is now kept and flagged.
    summary, store, ref_store = overflowing_session(reach_env, make_store, prov)
    assert summary.n_overflowed >= 1 and summary.dropped_rows >= 1
    assert [(r.outcome, r.seed, r.store_index) for r in summary.episodes] == [
        ("committed", 0, 0),
        ("committed", 1, 1),
    ]
    flagged = [r for r in summary.episodes if r.dropped_rows]
    assert len(flagged) == summary.n_overflowed
    assert sum(r.dropped_rows for r in flagged) == summary.dropped_rows
    assert store.validate().ok and store.n_episodes == 2
    check_episode_shape(store)  # the terminal row is never dropped
    for rec in summary.episodes:
        i = rec.store_index
        p = store.provenance(i)
        assert (p.dropped_rows, p.gap_rows, p.reset_seed) == (
            rec.dropped_rows,
            rec.gap_rows,
            rec.seed,
        )
        ep, ref = store.episode(i), ref_store.episode(i)
        assert (
            len(ep["action"])
            == rec.steps - rec.dropped_rows
            == len(ref["action"]) - (rec.dropped_rows)
        )
        if len(rec.gap_rows) == 1:
            # Not thinned silently: the stored rows are the reference's minus one
            # contiguous run right after the flagged row.
            r = rec.gap_rows[0]
            lost = np.arange(r + 1, r + 1 + rec.dropped_rows)
            for k in ep:
                if k != "timestamp":
                    np.testing.assert_array_equal(ep[k], np.delete(ref[k], lost, axis=0), k)
    assert any(len(r.gap_rows) == 1 for r in flagged)


def test_overflow_discard_mode_records_the_episode_again_whole(reach_env, make_store, prov):
    summary, store, ref_store = overflowing_session(
        reach_env, make_store, prov, on_overflow="discard"
    )
    assert summary.n_overflowed >= 1 and summary.dropped_rows >= 1
    lost = [r for r in summary.episodes if r.outcome == "overflowed"]
    assert len(lost) == summary.n_overflowed
    assert all(r.store_index is None and r.dropped_rows > 0 for r in lost)
    assert sum(r.dropped_rows for r in lost) == summary.dropped_rows
    kept = [r for r in summary.episodes if r.outcome == "committed"]
    assert [(r.seed, r.store_index) for r in kept] == [(0, 0), (1, 1)]
    # Each overflowed episode is recorded again from its seed.
    assert {r.seed for r in lost} <= {0, 1}
    assert store.validate().ok and store.n_episodes == 2
    check_episode_shape(store)
    # Not thinned: the stored episodes are exactly those of a recording that never
    # overflowed.
    np.testing.assert_array_equal(store.episode_ends, ref_store.episode_ends)
    for i in range(2):
        a, b = store.episode(i), ref_store.episode(i)
        assert store.provenance(i).dropped_rows == 0
        for k in a:
            if k != "timestamp":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("on_overflow", ["keep", "discard"])
def test_persistent_overflow_stops_the_session(reach_env, make_store, prov, on_overflow):
    store = make_store()
    slow = SlowStore(store, slow_appends=10**6, delay_s=0.1)
    rec = scripted_recorder(
        reach_env,
        slow,
        prov,
        n_episodes=3,
        realtime=False,
        block_on_full=False,  # as in real time: never wait for the disk
        queue_blocks=2,
        block_steps=1,
        max_consecutive_overflows=2,
        on_overflow=on_overflow,
    )
    with pytest.raises(RecorderError, match="cannot keep up"):
        rec.run()
    store.close()
    store = EpisodeStore.open(store.path)
    assert store.validate().ok
    if on_overflow == "discard":
        assert [r.outcome for r in rec.episodes] == ["overflowed", "overflowed"]
        assert store.n_episodes == 0
    else:  # kept and flagged, committed before the session stopped
        assert [r.outcome for r in rec.episodes] == ["committed", "committed"]
        assert store.n_episodes == 2
        assert all(store.provenance(i).dropped_rows > 0 for i in range(2))


def test_without_realtime_a_full_queue_waits_instead(reach_env, make_store, prov):
    store = make_store()
    slow = SlowStore(store, slow_appends=3, delay_s=0.05)
    summary = scripted_recorder(
        reach_env, slow, prov, n_episodes=1, realtime=False, queue_blocks=2, block_steps=1
    ).run()
    assert summary.n_overflowed == 0 and summary.n_episodes == 1
    assert sum(slow.appended) == summary.n_steps


def test_the_loop_does_not_wait_for_a_slow_disk(reach_env, make_store, prov):
    # Each block takes the writer 0.1 s; the loop still runs its episode at its own pace
    # and hands it over while the writer is still on its first rows.
    store = make_store()
    slow = SlowStore(store, slow_appends=10**6, delay_s=0.1)
    written_at_handover = []
    summary = scripted_recorder(
        reach_env,
        slow,
        prov,
        n_episodes=1,
        realtime=False,
        block_on_full=False,
        block_steps=1,
        on_episode=lambda i, ok: written_at_handover.append(sum(slow.appended)),
    ).run()
    assert summary.n_episodes == 1 and summary.n_overflowed == 0 and summary.n_steps > 3
    # Blocks are single rows: a loop that waited for the disk would hand the episode
    # over with all but its last block written.
    assert written_at_handover[0] < summary.n_steps // 2
    assert sum(slow.appended) == summary.n_steps  # and the writer wrote them all


def test_writer_failure_stops_the_session_and_keeps_committed_episodes(reach_env, make_store, prov):
    store = make_store()
    failing = SlowStore(store, 0, 0.0, fail_on_episode=2)
    rec = scripted_recorder(reach_env, failing, prov, n_episodes=3, realtime=False)
    with pytest.raises(RecorderError, match="No space left on device") as info:
        rec.run()
    assert "seed 1" in str(info.value)
    store.close()
    store = EpisodeStore.open(store.path)
    assert store.n_episodes == 1 and store.validate().ok
    check_episode_shape(store)


def test_session_log_says_queued_until_committed_and_lost_if_the_writer_fails(
    reach_env, make_store, prov
):
    # Every block takes the writer 50 ms, so an episode handed over is not committed yet;
    # the second episode's rows (all in one block, sent with its commit) fail to write.
    store = make_store()
    slow = SlowStore(store, slow_appends=10**6, delay_s=0.05, fail_on_episode=2)
    seen = []
    rec = scripted_recorder(
        reach_env,
        slow,
        prov,
        n_episodes=2,
        realtime=False,
        block_steps=1000,
        on_episode=lambda i, ok: seen.append(rec.episodes[-1].outcome),
    )
    with pytest.raises(RecorderError, match="No space left on device"):
        rec.run()
    assert seen == ["queued", "queued"]  # not "committed" before the store said so
    assert [(r.outcome, r.store_index) for r in rec.episodes] == [
        ("committed", 0),
        ("lost", None),
    ]
    store.close()
    assert EpisodeStore.open(store.path).n_episodes == 1


def test_kept_message_comes_after_the_commit(reach_env, make_store, prov):
    class Display:
        def __init__(self):
            self.lines = []

        def update(self, stats):
            pass

        def message(self, text, level="info"):
            # The episode this message announces is in the store by now.
            self.lines.append((text, EpisodeStore.open(store.path).n_episodes))

    store = make_store()
    display = Display()
    slow = SlowStore(store, slow_appends=10**6, delay_s=0.02)
    scripted_recorder(reach_env, slow, prov, n_episodes=2, display=display).run()
    kept = [(t.split(":")[0], n) for t, n in display.lines if " kept" in t]
    assert [t for t, _ in kept] == ["episode 1/2 kept", "episode 2/2 kept"]
    assert kept[0][1] >= 1 and kept[1][1] == 2


def test_a_dead_writer_never_hangs_the_recorder(reach_env, make_store, prov):
    # The append fails and so does the clean-up discard: the writer must neither die
    # silently nor leave the loop blocked on its full queue.
    store = make_store()
    broken = SlowStore(store, 0, 0.0, fail_on_episode=1, fail_discard=True)
    rec = scripted_recorder(
        reach_env, broken, prov, n_episodes=3, realtime=False, queue_blocks=2, block_steps=1
    )
    raised = []

    def run():
        try:
            rec.run()
        except BaseException as e:
            raised.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the recorder hung on a failed writer"
    assert len(raised) == 1 and isinstance(raised[0], RecorderError)
    assert "No space left on device" in str(raised[0])


def test_a_wall_clock_step_back_neither_breaks_timestamps_nor_the_session(
    reach_env, make_store, prov, monkeypatch
):
    # time.time() jumps back 10 s at every call (an NTP step, exaggerated).
    now = [2.0e9]

    def stepping_back():
        now[0] -= 10.0
        return now[0]

    store = make_store()
    monkeypatch.setattr(time, "time", stepping_back)
    summary = scripted_recorder(reach_env, store, prov, n_episodes=2).run()
    monkeypatch.undo()
    assert summary.n_episodes == 2
    store = EpisodeStore.open(store.path)
    ts = np.concatenate([store.episode(i)["timestamp"] for i in range(2)])
    assert np.all(np.diff(ts) >= 0) and abs(ts[0] - 2.0e9) < 100
    starts = [store.provenance(i).start_time_unix_s for i in range(2)]
    assert starts[0] <= starts[1] and starts[0] <= ts[0]


def test_operator_marks_are_stored_as_human_labels(reach_env, make_store, prov, keys):
    store = make_store()
    events = keys(
        (0, "+w"), (0, "return"), (3, "y"), (4, "return"),  # marked success: kept
        (5, "return"), (8, "return"),  # not marked: kept
        (9, "escape"),
    )  # fmt: skip
    summary = Recorder(
        reach_env,
        KeyboardDevice(EventLogSource(events)),
        store,
        provenance=prov,
        realtime=False,
        review=False,
    ).run()
    assert [r.label_stored for r in summary.episodes] == [True, False]
    store = EpisodeStore.open(store.path)
    # The recorded success stays the env's; the operator's mark is a label of its own.
    assert store.recorded_provenance(0).success is False
    assert store.provenance(0).success is True
    labels = store.labels()
    assert [(lb.episode_id, lb.success, lb.labeller) for lb in labels] == [
        (summary.episodes[0].episode_id, True, "op-test")
    ]


def test_clipped_actions_and_env_flags_reach_the_store(make_store, prov):
    class LoudDevice:
        operator_driven = False
        source, policy_id = "scripted", "loud"

        def __init__(self):
            self.t = 0

        def reset(self):
            self.t = 0

        def act(self, obs):
            self.t += 1
            return np.array([2.0 if self.t == 2 else 0.1, 0, 0, 0], np.float32)

        def poll_events(self):
            return []

    class FlaggingEnv:
        def __init__(self, env):
            self.env = env

        def reset(self, *, seed=None):
            return self.env.reset(seed=seed)

        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            self.n = getattr(self, "n", 0) + 1
            # As the safety filter reports: step 4 clipped by its velocity constraint.
            safety = {"velocity": self.n == 4, "table": False}
            flags = {"intervention": self.n == 3, "clipped": self.n == 4, "safety": safety}
            return obs, r, term, trunc, {**info, **flags}

    store = make_store()
    Recorder(
        FlaggingEnv(RobotEnv("reach", sim_config=SimConfig(safety_filter=False))),
        LoudDevice(),
        store,
        provenance=prov,
        n_episodes=1,
        max_episode_steps=4,
    ).run()
    done = EpisodeStore.open(store.path)
    ep = done.episode(0)
    assert ep["clipped"].tolist() == [False, True, False, True]
    assert ep["intervention"].tolist() == [False, False, True, False]
    assert ep["action"][1, 0] == 1.0
    assert done.provenance(0).safety_interventions == {"velocity": 1}


# --- replay and the pipeline's shorthand ------------------------------------------------


def test_replay_device_reproduces_a_stored_episode(reach_env, make_store, prov):
    src = make_store("src.zarr")
    Recorder(
        reach_env,
        scripted_device("reach", action_noise_std=0.3, seed=7),
        src,
        provenance=EpisodeProvenance(**{**prov.__dict__, "source": "scripted"}),
        n_episodes=2,
        seed=5,
    ).run()
    src.close()
    src = EpisodeStore.open(src.path)
    original = src.episode(1)

    dst = make_store("dst.zarr")
    replay = ReplayDevice(src.path, episode=1)
    assert replay.source == "scripted"
    summary = Recorder(reach_env, replay, dst, provenance=prov, n_episodes=1, seed=6).run()
    assert summary.n_episodes == 1
    dst = EpisodeStore.open(dst.path)
    replayed = dst.episode(0)
    for k in original:
        if k != "timestamp":
            np.testing.assert_array_equal(replayed[k], original[k], err_msg=k)

    # From another initial state the actions still play back, and the episode stops
    # (truncated) when they run out.
    dst2 = make_store("dst2.zarr", timestamps=False)
    replay = ReplayDevice(src.path, 1)
    Recorder(reach_env, replay, dst2, provenance=prov, n_episodes=1, seed=99).run()
    dst2 = EpisodeStore.open(dst2.path)
    ep = dst2.episode(0)
    n = len(ep["action"])
    np.testing.assert_array_equal(ep["action"], original["action"][:n])
    assert ep["truncated"][-1] or ep["terminated"][-1]
    if not ep["terminated"][-1]:
        assert n == len(original["action"])


def test_replay_of_a_missing_episode_is_named(make_store):
    store = make_store()
    store.close()
    with pytest.raises(ValueError, match="out of range"):
        ReplayDevice(store.path, 0)


def test_record_episodes_keeps_the_pipeline_contract(reach_env, make_store, prov):
    from robot_rl.sim.experts import make_expert

    store = make_store()
    template = EpisodeProvenance(**{**prov.__dict__, "source": "scripted", "policy_id": "x"})
    calls = []
    summary = record_episodes(
        reach_env,
        make_expert("reach"),
        store,
        n_episodes=3,
        seed=3,
        provenance=template,
        action_noise_std=0.1,
        on_episode=lambda i, ok: calls.append((i, ok)),
    )
    assert summary.n_episodes == 3 and [c[0] for c in calls] == [0, 1, 2]
    assert summary.n_success == sum(ok for _, ok in calls)
    store.close()
    store = EpisodeStore.open(store.path)
    assert store.n_episodes == 3 and store.n_steps == summary.n_steps
    ids = {store.provenance(i).episode_id for i in range(3)}
    assert len(ids) == 3
    assert all(store.provenance(i).policy_id == "x" for i in range(3))
    first_obs, _ = reach_env.reset(seed=3)
    np.testing.assert_array_equal(store.episode(0)["ee_pos"][0], first_obs["ee_pos"])


def test_writer_thread_is_the_only_one_touching_the_store(reach_env, make_store, prov):
    store = make_store()
    threads = set()
    real_begin = store.begin_episode

    class Spy:
        def __getattr__(self, name):
            return getattr(store, name)

        def begin_episode(self):
            threads.add(threading.current_thread().name)
            return real_begin()

    scripted_recorder(reach_env, Spy(), prov, n_episodes=2).run()
    assert threads == {"episode-writer"}


class VirtualClock:
    """``time.monotonic`` and ``time.sleep`` of the recording loop on a clock that moves
    only when the loop sleeps (or a test advances it), so real-time pacing is checked
    without depending on how busy the machine is. Other threads sleep for real."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        self._loop_thread = threading.get_ident()
        self._real_sleep = time.sleep
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        monkeypatch.setattr(time, "sleep", self._sleep)

    def _sleep(self, seconds):
        if threading.get_ident() != self._loop_thread:
            return self._real_sleep(seconds)
        self.now += max(seconds, 0.0)


class SlowStepEnv:
    """The env, with step number ``slow_step`` (counted over the session) taking
    ``seconds`` on the clock."""

    def __init__(self, env, clock, slow_step=None, seconds=0.0):
        self.env, self.clock, self.slow_step, self.seconds = env, clock, slow_step, seconds
        self.n_steps = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        if self.n_steps == self.slow_step:
            self.clock.now += self.seconds
        self.n_steps += 1
        return self.env.step(action)


PERIOD_S = 0.02  # 50 Hz


def paced_session(reach_env, make_store, prov, monkeypatch, slow_periods=0.0, display=None):
    """Two scripted reach episodes in real time at 50 Hz on a virtual clock; step 3 of the
    first episode takes ``slow_periods`` control periods. Returns (summary, the row
    timestamps of each episode: the recorder's own log of when each tick stepped)."""
    clock = VirtualClock(monkeypatch)
    env = SlowStepEnv(reach_env, clock, slow_step=3, seconds=slow_periods * PERIOD_S)
    store = make_store()
    summary = scripted_recorder(
        env, store, prov, n_episodes=2, realtime=True, control_hz=50.0, display=display
    ).run()
    monkeypatch.undo()
    store = EpisodeStore.open(store.path)
    assert summary.n_episodes == 2 and summary.n_overflowed == 0
    return summary, [store.episode(i)["timestamp"] for i in range(2)]


def test_realtime_holds_each_tick_to_the_control_period_and_shows_progress(
    reach_env, make_store, prov, monkeypatch
):
    import io

    from rich.console import Console

    from robot_rl.teleop.display import RichLiveDisplay

    out = io.StringIO()
    display = RichLiveDisplay(console=Console(file=out, force_terminal=True, width=120))
    with display:
        summary, stamps = paced_session(reach_env, make_store, prov, monkeypatch, display=display)
    # Every tick steps one period after the last (the sim alone would run ~1000 steps/s).
    for ts in stamps:
        assert len(ts) >= 7
        np.testing.assert_allclose(np.diff(ts), PERIOD_S, atol=1e-6)
    assert summary.overruns == 0
    text = out.getvalue()
    for needle in ("2/2 committed", "success", "writer queue", "writer lag", "episode 2/2 kept"):
        assert needle in text, needle


def test_a_late_tick_is_caught_up_on_the_same_deadlines(reach_env, make_store, prov, monkeypatch):
    # Step 3 takes 1.5 periods: the next tick starts at once (0.5 period late), and the
    # one after is back on the original deadlines; one overrun is counted.
    summary, (ts, _) = paced_session(reach_env, make_store, prov, monkeypatch, slow_periods=1.5)
    expected = np.full(len(ts) - 1, PERIOD_S)
    expected[3:5] = 1.5 * PERIOD_S, 0.5 * PERIOD_S
    np.testing.assert_allclose(np.diff(ts), expected, atol=1e-6)
    assert summary.overruns == 1


def test_a_tick_late_by_more_than_a_period_moves_the_deadlines_instead_of_bursting(
    reach_env, make_store, prov, monkeypatch
):
    # Step 3 takes 2.5 periods: catching up would run two ticks back to back; instead the
    # deadlines restart from the late tick and every later tick keeps the period.
    summary, (ts, _) = paced_session(reach_env, make_store, prov, monkeypatch, slow_periods=2.5)
    expected = np.full(len(ts) - 1, PERIOD_S)
    expected[3] = 2.5 * PERIOD_S
    np.testing.assert_allclose(np.diff(ts), expected, atol=1e-6)
    assert summary.overruns == 1


def test_line_display_reports_each_episode(reach_env, make_store, prov):
    import io

    from rich.console import Console

    from robot_rl.teleop.display import LineDisplay

    out = io.StringIO()
    store = make_store()
    scripted_recorder(
        reach_env, store, prov, n_episodes=2, display=LineDisplay(Console(file=out))
    ).run()
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["episode 1/2 kept", "episode 2/2 kept"]
