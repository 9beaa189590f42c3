"""A real QuestDB on loopback without Docker: the pinned jar from Maven Central, a Java found
on this machine, and a detached server process that ``start``, ``stop`` and ``status`` share."""

from sql.questdb_local.jar import QUESTDB_VERSION, cache_dir, ensure_jar
from sql.questdb_local.java import JavaRuntime, find_java
from sql.questdb_local.server import ServerConfig, ServerState, server_build, start, state_of, stop

__all__ = [
    "QUESTDB_VERSION",
    "JavaRuntime",
    "ServerConfig",
    "ServerState",
    "cache_dir",
    "ensure_jar",
    "find_java",
    "server_build",
    "start",
    "state_of",
    "stop",
]
