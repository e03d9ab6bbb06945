"""After it had to change a command, the filter closes on the command stream without
overshooting it and passes it exactly again: a glitch in a smooth 1 kHz stream is
absorbed in a few periods, not turned into an oscillation."""

import numpy as np

from robot_rl.safety import RobotState, SafetyFilter


def test_a_glitch_in_a_smooth_stream_is_absorbed():
    dt = 0.001
    f = SafetyFilter.from_yaml("franka_panda/robot.yaml", dt=dt, geometry=False)
    home = f.description.limits.home_joint_pos_rad
    t = np.arange(-2, 6000) * dt
    stream = home + 0.2 * np.sin(2 * np.pi * 0.5 * t[:, None] + np.arange(7))
    z = np.zeros((1, 7))
    f.reset(RobotState(stream[1][None], ((stream[1] - stream[0]) / dt)[None], z))
    out_log, changed = [], []
    for k in range(2, len(stream)):
        cmd = stream[k].copy()
        if k == 2000:
            cmd[2] += 0.001  # one glitched period on joint 3
        out, report = f.filter(
            RobotState(out_log[-1][None] if out_log else stream[1][None], z, z), cmd[None]
        )
        out_log.append(out[0])
        changed.append(bool(report.clipped[0]))
    err = np.abs(np.array(out_log) - stream[2:])
    # The stream (the reset's own start aside) passes exactly before the glitch and again
    # a few periods after it, for good.
    assert not any(changed[10:1998])
    assert 1 <= sum(changed) - sum(changed[:10]) <= 30
    assert not any(changed[2100:]) and err[2100:].max() == 0.0
    # Closing in, it never went further than the glitch itself.
    assert err[1998:2100, 2].max() <= 0.0011
