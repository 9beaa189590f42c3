"""The ingester's pure parts: decoding, normalising, spooling, backing off."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import msgspec
import pytest

from ingest.batch import Batch, Floats, Ints
from ingest.decode import decode_frame, decode_market_frame
from ingest.gap_journal import GapJournal, OpenGap
from ingest.protocol import PROTOCOLS, Quote, Trade
from ingest.sinks import SQLiteSink
from ingest.spool import Spool
from ingest.writer import BatchWriter
from sql.backoff import Backoff
from sql.markets import CRYPTO
from sql.tables import STOCK_TRADES
from tests.polling import wait_for

TRADE = b'{"ev":"XT","pair":"BTC-USD","p":64000.5,"s":4.522e-05,"t":1700000000123,"x":1,"i":"42","c":[2],"r":1700000000150}'  # noqa: E501


def test_a_good_frame_decodes_in_one_piece() -> None:
    decoded = decode_frame(b"[" + TRADE + b"," + TRADE.replace(b'"XT"', b'"XT"', 1) + b"]")
    assert len(decoded.trades) == 2
    assert decoded.malformed == []
    assert decoded.unknown == 0


def test_one_bad_event_does_not_cost_the_good_ones() -> None:
    bad = b'{"ev":"XT","pair":"BTC-USD","p":"sixty"}'
    unknown = b'{"ev":"XZ","zz":1}'
    decoded = decode_frame(b"[" + TRADE + b"," + bad + b"," + unknown + b"," + TRADE + b"]")
    assert [type(e) for e in decoded.trades] == [Trade, Trade]
    assert decoded.malformed == [bad]
    assert decoded.unknown == 1


@pytest.mark.parametrize(
    "frame",
    [b'[{"ev":"XT","pair":"BTC-USD","p":64', b"not json", b'{"ev":"XT"}', b"\xff\xfe", b"[NaN]"],
)
def test_a_malformed_frame_is_set_aside_whole(frame: bytes) -> None:
    decoded = decode_frame(frame)
    assert (decoded.trades, decoded.quotes, decoded.bars) == ([], [], [])
    assert len(decoded.malformed) == 1


def test_unknown_fields_are_ignored_and_statuses_and_second_bars_sorted_out() -> None:
    quote = b'{"ev":"XQ","pair":"ETH-USD","bp":1,"bs":2,"ap":3,"as":4,"t":5,"x":1,"lp":1,"new":7}'
    second = (
        b'{"ev":"XAS","pair":"ETH-USD","o":1,"h":1,"l":1,"c":1,"v":1,"vw":1,"z":1,"s":0,"e":1000}'
    )
    status = b'{"ev":"status","status":"success","message":"subscribed to: XQ.ETH-USD"}'
    decoded = decode_frame(b"[" + quote + b"," + second + b"," + status + b"]")
    assert [type(e) for e in decoded.quotes] == [Quote]
    assert (decoded.trades, decoded.bars) == ([], [])
    assert decoded.second_bars == 1
    assert decoded.statuses[0].status == "success"


def test_rows_are_normalised() -> None:
    decoded = decode_frame(
        b'[{"ev":"XT","pair":"X:BTCUSD","p":1,"s":2,"t":3,"x":4,"i":12345,"c":[1]},'
        b'{"ev":"XT","pair":"SOL-USD","p":1.0,"s":2,"t":3,"x":4},'
        b'{"ev":"XA","pair":"X:ETHUSD","o":1,"h":2,"l":0.5,"c":1.5,"v":10,"vw":1.2,"z":0.1,'
        b'"s":60000,"e":120000}]'
    )
    batch = Batch()
    batch.trades.extend(decoded.trades, 99)
    batch.bars.extend(decoded.bars, 99)
    assert batch.trades.symbol == ["BTC-USD", "SOL-USD"]
    assert batch.trades.trade_id == ["12345", ""]
    assert batch.trades.side == ["sell", "unknown"]
    assert batch.trades.conditions == ["[1]", "[]"]
    assert batch.trades.price.tolist() == [1.0, 1.0]
    assert all(type(p) is float for p in batch.trades.price)  # JSON 1 is stored as a double
    assert batch.bars.symbol == ["ETH-USD"]
    assert batch.bars.trade_count == [100]  # volume 10 / average trade size 0.1
    assert batch.bars.ingested_ms.tolist() == [99]
    assert len(batch) == 3
    twice = Batch.joined([batch, batch])
    assert twice.trades.trade_id == ["12345", "", "12345", ""]
    assert twice.bars.trade_count == [100, 100]
    assert len(twice) == 6
    assert len(batch) == 3  # the parts are left as they were
    assert CRYPTO.pair("X:MATICUSD") == "MATIC-USD"


def test_the_spool_keeps_order_and_sets_torn_batches_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for ts in (1, 2, 3):
        written = Batch()
        written.trades.extend([Trade(pair="BTC-USD", price=1, size=1, ts_ms=ts, exchange_id=1)], 0)
        spool.append(written)
    first, second, _ = sorted(tmp_path.glob("*.batch"))
    second.write_bytes(second.read_bytes()[:-3])  # a crash mid-write
    reopened = Spool(tmp_path)  # as on the next start
    seen: list[int] = []
    while batches := reopened.oldest(max_rows=1):
        seen.extend(ts for batch in batches for ts in batch.trades.ts_ms)
        reopened.remove_oldest(len(batches))
    assert seen == [1, 3]
    assert [p.suffix for p in sorted(tmp_path.iterdir())] == [".torn"]
    assert not first.exists()


def test_the_spool_reads_back_packed_columns_and_the_lists_older_versions_wrote(
    tmp_path: Path,
) -> None:
    written = Batch()
    trades = [
        Trade(pair="BTC-USD", price=1.5 + i, size=0.25, ts_ms=i, exchange_id=1) for i in (1, 2)
    ]
    written.trades.extend(trades, 7)
    stocks = decode_market_frame(
        PROTOCOLS["stocks"],
        b'[{"ev":"T","sym":"AAPL","x":4,"i":"9","z":3,"p":190.5,"s":100,"t":1700000000000,"q":5}]',
    )
    for table, events in stocks.rows.items():
        written.add(table, events, 7)
    Spool(tmp_path).append(written)
    # A spool file as versions before packed columns wrote it: every column a msgpack list.
    older = msgspec.msgpack.Encoder(enc_hook=lambda packed: packed.tolist()).encode(written)
    (tmp_path / "1.batch").write_bytes(struct.pack(">II", len(older), zlib.crc32(older)) + older)
    new, old = Spool(tmp_path).oldest(max_rows=10)
    for batch in (new, old):
        assert isinstance(batch.trades.price, Floats)
        assert isinstance(batch.trades.ts_ms, Ints)
        assert batch.trades.price.tolist() == [2.5, 3.5]
        assert batch.trades.ts_ms.tolist() == [1, 2]
        assert batch.trades.ingested_ms.tolist() == [7, 7]
        assert batch.trades.symbol == ["BTC-USD", "BTC-USD"]
        stock = batch.markets[STOCK_TRADES.name]
        assert list(stock.values("price")) == [190.5]
        assert list(stock.values("ts_ms")) == [1_700_000_000_000]
        assert stock.values("decimal_size") == [None]  # nullable: a list
    assert isinstance(new.markets[STOCK_TRADES.name].values("price"), Floats)


def test_a_batch_put_back_in_front_is_read_first_also_after_a_restart(tmp_path: Path) -> None:
    def batch(ts: int) -> Batch:
        made = Batch()
        made.trades.extend([Trade(pair="BTC-USD", price=1, size=1, ts_ms=ts, exchange_id=1)], 0)
        return made

    spool = Spool(tmp_path)
    spool.append(batch(3))
    spool.push_front(batch(2))  # a batch the writer took from memory and could not store
    spool.push_front(batch(1))
    spool.append(batch(4))
    reopened = Spool(tmp_path)
    first_two = reopened.oldest(max_rows=2)
    assert Batch.joined(first_two).trades.ts_ms.tolist() == [1, 2]
    reopened.remove_oldest(len(first_two))
    assert Batch.joined(reopened.oldest(max_rows=100)).trades.ts_ms.tolist() == [3, 4]


def test_open_gaps_outlive_the_process_until_closed_and_an_unreadable_file_is_set_aside(
    tmp_path: Path,
) -> None:
    journal = GapJournal(tmp_path)
    first, history = OpenGap("crypto", 1, 2), OpenGap("crypto", 0, 1, trades=False, symbols=("X",))
    journal.open(first)
    journal.open(history)
    journal.open(first)  # the same window found twice: closed once per finding
    assert GapJournal(tmp_path).gaps == [first, history, first]  # as on the next start
    journal.close(first)
    assert GapJournal(tmp_path).gaps == [history, first]
    (tmp_path / "open-gaps.json").write_bytes(b"[{")  # only a hand can tear it (replaced whole)
    assert GapJournal(tmp_path).gaps == []
    assert (tmp_path / "open-gaps.unreadable").read_bytes() == b"[{"


def test_handed_over_batches_are_settled_once_stored_in_order(tmp_path: Path) -> None:
    writer = BatchWriter(SQLiteSink(tmp_path / "x.db"), Spool(tmp_path / "spool"))
    assert writer.hand_over() == 0  # nothing pending: nothing to wait for
    handed = 0
    for ts in (1, 2, 3):
        writer.pending.trades.extend(
            [Trade(pair="BTC-USD", price=1, size=1, ts_ms=ts, exchange_id=1)], 0
        )
        handed = writer.hand_over()
    assert handed == 3
    wait_for(lambda: writer.settled(handed), until=bool, what="the batches stored")
    assert not writer.settled(handed + 1)
    assert writer.close()


def test_a_cut_that_does_not_cover_its_newest_row_is_followed_by_one_that_does(
    tmp_path: Path,
) -> None:
    """A batch's ``cut_ms`` vouches only for rows received before it: a row stamped in the
    cut's millisecond (here, to be sure of it whatever the machine's pauses, a second on)
    gets a later cut, with no rows of its own if none come, and after that an idle hand-over
    passes nothing on."""
    written: list[Batch] = []
    writer = BatchWriter(
        SQLiteSink(tmp_path / "x.db"), Spool(tmp_path / "spool"),
        on_written=lambda batch, seconds: written.append(batch),
    )  # fmt: skip
    stamped_ms = time.time_ns() // 1_000_000 + 1000
    writer.pending.trades.extend(
        [Trade(pair="BTC-USD", price=1, size=1, ts_ms=stamped_ms, exchange_id=1)], stamped_ms
    )
    writer.hand_over()  # (idle hand-overs, as the timer makes, until the clock is past it)
    wait_for(writer.hand_over, lambda _: time.time_ns() // 1_000_000 > stamped_ms + 1)
    handed = writer.hand_over()
    assert writer.hand_over() == handed  # covered: an idle hand-over passes nothing on
    wait_for(lambda: len(written), lambda count: count == handed, what="the batches written")
    assert [len(batch) for batch in written] == [1, 0]
    assert written[0].cut_ms <= stamped_ms < written[1].cut_ms
    assert writer.close()


def test_backoff_grows_with_jitter_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(0.5, 60)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 30 <= delays[-1] <= 60
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_each_tables_columns_in_a_batch_are_those_its_declaration_names() -> None:
    """The spool, both sinks and the DDL derive from sql/tables.py: a column added there and
    not here (or the other way) fails here, not in the store."""
    for table, rows in Batch().tables():
        assert set(type(rows).__struct_fields__) == {c.batch_field for c in table.columns}
