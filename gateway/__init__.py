"""gateway: the HTTP app. Wires compat (dialects) to engine (vLLM processes)."""

from gateway.app import create_app, create_app_from_env
from gateway.settings import Settings, SettingsError, parse_settings

__all__ = ["create_app", "create_app_from_env", "Settings", "SettingsError", "parse_settings"]
