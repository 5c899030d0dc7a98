"""dtnsess: command-line client for the DTN AdvancedSessionManager contract."""

__version__ = "0.1.0"
