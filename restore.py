"""
Restore each host's notebooks from its backups (see docs/backups.md).

    pyinfra inventory.py restore.py                                   latest snapshot, in place
    pyinfra inventory.py restore.py --data restore_snapshot=1a2b3c4d  that snapshot
    pyinfra inventory.py restore.py --data restore_to=/srv/restored   beside the live files
    pyinfra HOST restore.py --data restore_person=alice@example.org   per_person_servers: her home

In place, every file the snapshot would overwrite with other content is first moved to
/var/lib/jupyter-backup/moved-aside/TIME/ (nothing is lost); files created since the
snapshot stay. With per_person_servers, in place means one person's home (restore_person),
restored as that person while the hub keeps their server stopped; nobody else's files or
server are touched. The host uses the repository and password the deploy gave it: no password
is needed on this machine.
"""

from pyinfra import host

from operations import backups, settings

settings.validate(host, script="restore")
backups.restore_backup()
