"""``robot-rl-data``'s subcommands, by concern (:mod:`robot_rl.cli.data` holds the
registry, the parser and the commands that bring data in: import, make-dataset).

- :mod:`.info`: info, validate, stats;
- :mod:`.labels`: label, train-reward, relabel (human feedback and learned rewards);
- :mod:`.governance`: filter, purge, convert, merge, split (new stores from old ones).
"""
