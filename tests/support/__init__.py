"""Support code shared by the tests: what they start and how they look at it.

- processes, mmd_daemon, postfix, real_milters, scripted (+ children/): real daemons started
  by hand and stopped by PID (integration tests);
- container, probes, held_session, guide_setup, mail_packages: the throwaway systemd container
  of the system tests and what runs inside it;
- dbus, journald: a private dbus-daemon and a private journald;
- the rest: small readers, fakes and runners (cli_runner, detected, transport, users, ...).

Fixtures stay in each lane's conftest.py; fakes used by one unit folder only stay beside it
(tests/unit/detection/detection_fakes.py, tests/unit/report/entries.py), and the VM lane keeps
its image and guest scripts in tests/vm.
"""
