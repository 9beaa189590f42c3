"""The ASGI entry point for servers: the app built from the environment at start-up."""

from api.app import create_app
from api.settings import ApiSettings
from sql import load_environment

app = create_app(ApiSettings.from_env(load_environment()))
