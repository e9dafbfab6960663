"""Checks of paths on the host: notebook_dir, conda_prefix, a backup repository, restore_to."""

from __future__ import annotations

import re

# The deploy chowns notebook_dir to the Jupyter user and makes it writable in the unit
# (ReadWritePaths); the installer writes conda_prefix as root. Neither may be, or be
# inside, a directory the system itself owns. /var holds the Jupyter user's home.
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)
# Top-level directories that hold other things: fine to be under, not to be.
SHARED_TOP_DIRS = ("/home", "/media", "/mnt", "/opt", "/srv")


def check_abs_path(value):
    # It lands in shell commands, the systemd unit and Python config: no quoting surprises.
    if not (isinstance(value, str) and re.fullmatch(r"/[A-Za-z0-9._+/-]*", value)):
        return "an absolute path of letters, digits and . _ + - / (no spaces or quotes)"
    parts = value.rstrip("/").split("/")[1:]
    if value != "/" and (value.endswith("/") or any(part in ("", ".", "..") for part in parts)):
        return "a normalised absolute path: no '.' or '..' parts, no '//', no trailing '/'"
    if value == "/" or value in SHARED_TOP_DIRS or any(value == d or value.startswith(d + "/") for d in SYSTEM_DIRS):
        return (
            f"a directory of its own, not '/', not one of {', '.join(SHARED_TOP_DIRS)} and not in a system "
            f"directory ({', '.join(SYSTEM_DIRS)}), e.g. '/srv/jupyter'"
        )
    if len(parts) == 2 and parts[0] == "home":
        return "a directory of its own, not a person's home directory itself (e.g. '/home/alice/notebooks')"
    return None


def check_abs_path_or_none(value):
    if value is None:
        return None
    problem = check_abs_path(value)
    return f"None or {problem}" if problem else None


def home_of(user: str) -> str:
    """The notebook user's home (the deploy creates it; backups and restores name it)."""
    return f"/var/lib/{user}"


def overlap(a: str, b: str) -> bool:
    """Whether one of two normalised paths is, or is inside, the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


# restic repositories this deploy sets up: a local path, sftp:user@host:/path,
# rest:http(s)://..., s3:... (restic's own spellings). No whitespace, quotes or backslashes:
# the value lands in a root-only shell file and on restic's command line through it.
_SFTP_REPOSITORY = re.compile(r"sftp:([a-z_][a-z0-9_.-]{0,31})@([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(/[^\s'\"\\]*)")
_OTHER_REPOSITORY = re.compile(r"(rest:https?://|s3:)[^\s'\"\\]+")
# A URL's user information (``user:password@``): never shown, never sent in clear.
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
# Where Debian keeps backups, and state directories: a local repository may be a directory of
# its own there (``/var/backups/NAME``, ``/var/lib/NAME``), not one the deploy itself uses.
LOCAL_REPOSITORY_PARENTS = ("/var/backups", "/var/lib")


def shown_repository(value):
    """A repository as it may be printed: ``rest:https://***@host/path`` (the password never)."""
    return _USERINFO.sub("***@", value) if isinstance(value, str) else value


def _check_local_repository(value: str) -> str | None:
    parent = next((p for p in LOCAL_REPOSITORY_PARENTS if value.startswith(p + "/")), None)
    if parent is None:
        problem = check_abs_path(value)
        return problem and f"for a local repository, {problem}, or a directory of its own in /var/backups or /var/lib"
    if check_abs_path("/srv" + value[len(parent) :]):
        return "for a local repository, a normalised path of letters, digits and . _ + - / (no spaces or quotes)"
    if value.split("/")[3] in ("jupyter-backup", "jupyter-apache-deploy"):
        return f"for a local repository, a directory of its own, not one this deploy keeps its state in ({value})"
    return None


def check_backup_repository(value):
    if value is None or _SFTP_REPOSITORY.fullmatch(value or ""):
        return None
    if isinstance(value, str) and _OTHER_REPOSITORY.fullmatch(value):
        if value.startswith("rest:http://") and _USERINFO.search(value):
            return "a rest: repository with credentials over https:// (over http:// they would travel in clear)"
        return None
    if isinstance(value, str) and value.startswith("/"):
        return _check_local_repository(value)
    return (
        "None (no backups) or a restic repository: a local path ('/srv/backups/jupyter', '/var/backups/jupyter'), "
        "'sftp:user@host:/path', 'rest:https://host/path' or 's3:host/bucket/path'"
    )


def sftp_parts(repository: str) -> tuple[str, str, str] | None:
    """``sftp:user@host:/path`` -> (user, host, path); None for other repositories."""
    match = _SFTP_REPOSITORY.fullmatch(repository or "")
    return match.groups() if match else None


def check_restore_to(value):
    if value is None:
        return None
    problem = check_abs_path(value)
    return problem and f"None (restore in place) or an empty or new directory: {problem}"
