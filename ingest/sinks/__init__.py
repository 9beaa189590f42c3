"""Where rows go: one interface, one module per store."""

from ingest.sinks.base import Sink, SinkUnavailable
from ingest.sinks.questdb import QuestDBSink
from ingest.sinks.sqlite import SQLiteSink

__all__ = ["QuestDBSink", "SQLiteSink", "Sink", "SinkUnavailable"]
