"""Settings from the environment: defaults, parsing, errors naming the variable, no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import ApiSettings
from ingest.settings import DEFAULT_PAIRS, IngestSettings
from sql import SettingsError, StoreSettings, load_environment

KEY = "pk_live_abcdef0123456789"


def test_defaults_are_loopback_and_questdb() -> None:
    api = ApiSettings.from_env({})
    ingest = IngestSettings.from_env({})
    assert (api.api_host, api.api_port) == ("127.0.0.1", 8000)
    assert api.store == ingest.store == StoreSettings()
    assert api.store.questdb_ilp == "http::addr=127.0.0.1:9000;"
    assert api.store.questdb_pg == "postgresql://admin:quest@127.0.0.1:8812/qdb"
    assert api.store.database_path == Path("data/db/trading.db")
    assert ingest.polygon_ws_url == "wss://socket.massive.com/crypto"
    assert ingest.pairs == DEFAULT_PAIRS
    assert ingest.polygon_api_key is None


def test_values_are_parsed() -> None:
    env = {
        "STORE": "sqlite",
        "DATABASE_PATH": "/srv/tickpipe/x.db",
        "API_PORT": "8100",
        "PAIRS": " BTC-USD , ETH-USD,",
        "POLYGON_WS_URL": "ws://127.0.0.1:8765/crypto",
    }
    api, ingest = ApiSettings.from_env(env), IngestSettings.from_env(env)
    assert api.api_port == 8100
    assert api.store.store == "sqlite"
    assert api.store.database_path == Path("/srv/tickpipe/x.db")
    assert ingest.pairs == ("BTC-USD", "ETH-USD")
    assert ingest.polygon_ws_url == "ws://127.0.0.1:8765/crypto"


def test_each_market_gets_its_own_cluster_symbols_and_channels() -> None:
    env = {
        "MARKETS": "crypto,stocks,forex,indices",
        "POLYGON_WS_URL": "ws://127.0.0.1:8765/crypto",
        "STOCKS_SYMBOLS": "AAPL, BRK.A",
        "FOREX_CHANNELS": "C",
    }
    ingest = IngestSettings.from_env(env)
    feeds = {feed.market: feed for feed in ingest.feeds}
    assert feeds.keys() == {"stocks", "forex", "indices"}
    assert feeds["stocks"].symbols == ("AAPL", "BRK.A")
    assert feeds["stocks"].topics == "T.AAPL,T.BRK.A,Q.AAPL,Q.BRK.A,AM.AAPL,AM.BRK.A"
    assert feeds["forex"].topics == "C.EUR/USD,C.USD/JPY,C.GBP/USD"
    assert feeds["indices"].channels == ("V", "AM")
    assert ingest.ws_url("indices") == "ws://127.0.0.1:8765/indices"
    assert IngestSettings.from_env({}).feeds == ()  # crypto alone, as before


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"API_PORT": "eighty"}, "API_PORT"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"STORE": "postgres"}, "STORE"),
        ({"QUESTDB_PG": "mysql://db"}, "QUESTDB_PG"),
        ({"QUESTDB_ILP": "udp::addr=x;"}, "QUESTDB_ILP"),
        ({"PAIRS": "BTC-USD,BTC/USD"}, "PAIRS"),
        ({"POLYGON_WS_URL": "https://socket.massive.com"}, "POLYGON_WS_URL"),
        ({"CHANNELS": "XT,XZ"}, "CHANNELS"),
        ({"MARKETS": "crypto,bonds"}, "MARKETS"),
        ({"MARKETS": "stocks", "STOCKS_SYMBOLS": "AAPL,aapl"}, "STOCKS_SYMBOLS"),
        ({"MARKETS": "forex", "FOREX_SYMBOLS": "EURUSD"}, "FOREX_SYMBOLS"),
        ({"MARKETS": "indices", "INDICES_CHANNELS": "V,T"}, "INDICES_CHANNELS"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    settings_type = (
        ApiSettings if variable.startswith(("API", "STORE", "QUESTDB")) else IngestSettings
    )
    with pytest.raises(SettingsError) as error:
        settings_type.from_env(env)
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("name", ["POLYGON_API_KEY", "MASSIVE_API_KEY"])
def test_the_api_key_is_read_but_never_shown(name: str) -> None:
    settings = IngestSettings.from_env({name: KEY})
    assert settings.polygon_api_key is not None
    assert settings.polygon_api_key.reveal() == KEY
    for text in (repr(settings), str(settings), repr(settings.polygon_api_key), f"{settings}"):
        assert KEY not in text


def test_the_key_is_not_echoed_in_an_error_about_another_variable() -> None:
    with pytest.raises(SettingsError) as error:
        IngestSettings.from_env({"POLYGON_API_KEY": KEY, "PAIRS": "bad pair"})
    assert KEY not in str(error.value)


def test_the_environment_overrides_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("API_PORT=8200\nSTORE=sqlite\n# a comment\n")
    monkeypatch.setenv("API_PORT", "8300")
    monkeypatch.delenv("STORE", raising=False)
    settings = ApiSettings.from_env(load_environment(dotenv))
    assert (settings.api_port, settings.store.store) == (8300, "sqlite")
