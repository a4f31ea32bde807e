"""Environment references in config values, and redaction for display.

Credentials never live in ``rcmlake.yaml``: a URL says
``mysql://etl:${HOSPITAL_A_PASSWORD}@db:3306/hospital_a_db`` and the value
is read from the environment when a connection opens.
"""

from __future__ import annotations

import os
import re

from rcmlake.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"(?P<scheme>[a-z0-9+]+://)(?P<user>[^:/@]+):(?P<pw>[^@]*)@")


def resolve_env(value: str, *, field: str = "") -> str:
    """Substitute ``${VAR}`` references; a missing variable is a ConfigError naming it."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} is not set", field=field or None)
        return os.environ[name]

    return _REF.sub(sub, value)


def redact(url: str) -> str:
    """A URL fit for logs: any password replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
