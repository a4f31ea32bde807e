"""Environment references in config values, and redaction for display.

Credentials never live in ``rcmlake.yaml``: a URL says
``mysql://etl:${HOSPITAL_A_PASSWORD}@db:3306/hospital_a_db`` and the value
is read from the environment when a connection opens.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from rcmlake.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# scheme://user:password@host — the password may contain '@' or ':' (the host starts after
# the last '@' before the path), the user may be empty, the scheme in any case
_USERINFO = re.compile(r"(?i)(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/?#@]*):(?P<pw>[^?#]*)@")
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pwd|pass|secret|token|api_?key|access_?key|"
    r"secret_?key|account_?key|sig|sas_?token|client_?secret)=)(?P<value>[^&;#]*)"
)


def resolve_env(value: str, *, field: str = "", url: bool = False) -> str:
    """Substitute ``${VAR}`` references; a missing variable is a ConfigError naming it.

    In a ``url`` the values are percent-encoded, so a password with ``@``, ``:`` or ``/``
    stays a password instead of moving the host."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} is not set", field=field or None)
        return quote(os.environ[name], safe="") if url else os.environ[name]

    return _REF.sub(sub, value)


def redact(url: str) -> str:
    """A URL fit for logs: the password of the user part and secret query parameters
    (``?password=``, ``&sig=``, ``token=`` …) replaced by ``***``."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}***", url)
