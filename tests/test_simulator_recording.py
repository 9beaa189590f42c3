"""Record a feed, replay it frame for frame; and the simulator as its own process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.recording import read_recording
from ingest.simulator import Market
from ingest.simulator.faults import PeriodicFault, parse_periodic_fault
from ingest.simulator.generate import generate
from ingest.simulator.recorder import record
from ingest.simulator.tape import Tape
from sql.settings import Secret
from tests.polling import scaled
from tests.simulation import KEY, START_MS, client, config, frame, http_get, running


def data_frames(path: Path) -> list[str]:
    return [r.frame for r in read_recording(path) if '"ev":"status"' not in r.frame]


@pytest.mark.parametrize("speed", [0, 20])
def test_record_then_replay_frame_for_frame(tmp_path: Path, speed: float) -> None:
    recording = tmp_path / "session.jsonl.gz"

    async def scenario() -> list[str | bytes]:
        async with running(config(speed=30)) as live:
            url = f"ws://127.0.0.1:{live.port}/crypto"
            await record(
                url, Secret(KEY), "XT.*,XQ.BTC-USD,XA.*", recording, seconds=20, max_frames=60
            )
        expected = data_frames(recording)
        async with running(config(replay=recording, speed=speed)) as replay:
            async with client(replay, subscribe="XT.*") as ws:
                replayed: list[str | bytes] = []
                async with asyncio.timeout(scaled(30)):
                    while len(replayed) < len(expected):
                        replayed.append(await ws.recv())
        return replayed

    replayed = asyncio.run(scenario())
    expected = data_frames(recording)
    assert len(expected) > 40
    assert replayed == expected


def test_periodic_faults_fire_on_their_own() -> None:
    async def scenario() -> None:
        fault = parse_periodic_fault("close_normal:0.5")
        assert fault == PeriodicFault("close_normal", 0.5)
        async with (
            running(config(speed=30, faults=(fault,))) as sim,
            client(sim, subscribe="XT.*") as ws,
        ):
            async with asyncio.timeout(scaled(5)):
                async for _ in ws:
                    pass
            assert ws.close_code == 1000

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ["meteor:1", "drop", "drop:-1", "drop:soon"])
def test_a_bad_periodic_fault_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=text.partition(":")[0]):
        parse_periodic_fault(text)


def test_the_simulator_runs_as_a_process_and_the_recorder_as_another(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ingest.simulator",
        "serve",
        "--port",
        "0",
        "--speed",
        "30",
        "--keys",
        KEY,
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/crypto", banner)
        assert match, banner
        port = int(match[1])
        out = tmp_path / "recorded.jsonl.gz"
        url = f"ws://127.0.0.1:{port}/crypto"
        recorder = subprocess.run(
            [sys.executable, "-m", "ingest.simulator", "record", "--url", url,
             "--subscribe", "XT.*", "--frames", "20", "--seconds", "30", "--out", str(out)],
            env={**os.environ, "POLYGON_API_KEY": KEY},
            capture_output=True, text=True, timeout=scaled(60), check=False,
        )  # fmt: skip
        assert recorder.returncode == 0, recorder.stderr
        assert KEY not in recorder.stdout + recorder.stderr
        frames = [json.loads(r.frame) for r in read_recording(out)]
        assert len(frames) == 20
        assert [e["status"] for f in frames[:3] for e in f] == [
            "connected",
            "auth_success",
            "success",
        ]
        assert all(e["ev"] == "XT" for f in frames[3:] for e in f)

        status, body = asyncio.run(http_get(port, "/sim/stats"))
        assert status == 200
        assert body["events_published"] > 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=scaled(10)) == 0


def test_subscribed_status_frames_are_lists(tmp_path: Path) -> None:
    """The server only ever sends arrays, status included (clients index [0]). On a stepped
    clock, so that no trade can arrive between a request and its status reply."""

    async def scenario() -> None:
        async with running(config(stepped=True)) as sim, client(sim) as ws:
            await ws.send(json.dumps({"action": "subscribe", "params": "XT.BTC-USD"}))
            assert frame(await ws.recv())[0]["status"] == "success"
            await ws.send("not json")
            assert frame(await ws.recv())[0]["status"] == "error"

    asyncio.run(scenario())


def test_generate_writes_the_tape_as_frames_to_replay(tmp_path: Path) -> None:
    out = tmp_path / "tape.jsonl.gz"
    tape = Tape(Market(seed=7), ["XT", "XA"])
    written = generate(tape, START_MS // 1000, 90, out, frame_events=50)
    recorded = list(read_recording(out))
    expected = [e for s in range(START_MS // 1000, START_MS // 1000 + 90) for e in tape.second(s)]
    assert written == len(expected)
    assert all(len(json.loads(r.frame)) <= 50 for r in recorded)
    assert [r.ns for r in recorded] == sorted(r.ns for r in recorded)
    replayed = [event for r in recorded for event in json.loads(r.frame)]
    assert replayed == [json.loads(e.data) for e in expected]
