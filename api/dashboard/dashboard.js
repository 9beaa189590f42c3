// The dashboard: history over REST, then live over /ws, resumed with since= on reconnect.
// Crypto pairs are pushed live; stocks, forex pairs and indices (/api/{market}/...) are
// polled, as the push serves crypto only so far.
// With API_TOKEN set, open the page as /#token=<API_TOKEN>: the fragment never reaches the
// server or its logs; the page sends it as a bearer header and as a WebSocket subprotocol.
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) sessionStorage.setItem("tickpipe-token", params.get("token"));
const token = sessionStorage.getItem("tickpipe-token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const $ = (id) => document.getElementById(id);

const state = {
  pair: null, market: "crypto", interval: "1m", tz: "UTC", seq: null, socket: null, reconnects: 0,
  lastTime: 0, candles: 0, trades: [], seen: new Set(), book: new Map(), live: false,
  generation: 0, loading: new Set(),
};
window.tickpipe = state; // for the browser tests and the curious

const chart = LightweightCharts.createChart($("chart"), {
  layout: { background: { color: "#0f1419" }, textColor: "#d8dee4" },
  grid: { vertLines: { color: "#1c2128" }, horzLines: { color: "#1c2128" } },
  timeScale: { timeVisible: true, secondsVisible: false },
});
const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {});
const volume = chart.addSeries(LightweightCharts.HistogramSeries, {
  priceScaleId: "", priceFormat: { type: "volume" }, color: "#30363d",
});
volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
new ResizeObserver(() => chart.applyOptions({ width: $("chart").clientWidth })).observe($("chart"));

async function get(path) {
  const response = await fetch(path, { headers });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

// lightweight-charts throws on update() of a bar older than the last one: only the newest
// bar may change, older ones come with the next full load.
function draw(candle) {
  if (candle.open === null || candle.timestamp < state.lastTime) return;
  if (candle.timestamp > state.lastTime) state.candles += 1;
  state.lastTime = candle.timestamp;
  candles.update({ time: candle.timestamp, open: candle.open, high: candle.high,
                   low: candle.low, close: candle.close });
  volume.update({ time: candle.timestamp, value: candle.volume || 0,
                  color: candle.close >= candle.open ? "#1f4d2e" : "#5c2626" });
  state.forming = candle;
}

// A market's routes: crypto keeps the seed's /api/market; a forex pair is EUR-USD in a URL.
function route(kind, symbol = state.pair, market = state.market) {
  const base = market === "crypto" ? "/api/market" : `/api/${market}`;
  return `${base}/${kind}/${encodeURIComponent(symbol.replace("/", "-"))}`;
}

// History is loaded again now and then, since rows that arrive too late to be news (the
// week fetched on a first start, a gap filled after an outage) are stored, never pushed.
const HISTORY_LIMIT = 1000;
const REFRESH_SHORT_MS = 10000; // while the store had less than a page of candles
const REFRESH_MS = 60000;

async function loadHistory() {
  const generation = state.generation;
  const path = `${route("ohlcv")}?interval=${state.interval}` +
    `&tz=${encodeURIComponent(state.tz)}&limit=${HISTORY_LIMIT}`;
  const pushed = []; // candles pushed while the request is out: newer than its answer
  state.loading.add(pushed);
  let data = [];
  try { data = (await get(path)).data; } catch (error) { status(`no candles yet (${error.message})`); }
  finally { state.loading.delete(pushed); }
  if (generation !== state.generation) return;
  const ordered = data.filter((c) => c.open !== null).sort((a, b) => a.timestamp - b.timestamp);
  const unique = ordered.filter((c, i) => i === 0 || c.timestamp !== ordered[i - 1].timestamp);
  candles.setData(unique.map((c) => ({ time: c.timestamp, open: c.open, high: c.high,
                                       low: c.low, close: c.close })));
  volume.setData(unique.map((c) => ({ time: c.timestamp, value: c.volume || 0,
                                      color: c.close >= c.open ? "#1f4d2e" : "#5c2626" })));
  state.candles = unique.length;
  state.lastTime = unique.length ? unique[unique.length - 1].timestamp : 0;
  state.forming = unique.length ? unique[unique.length - 1] : null;
  pushed.forEach(draw);
}

function refreshHistory(generation) {
  setTimeout(async () => {
    if (generation !== state.generation) return;
    await loadHistory();
    refreshHistory(generation);
  }, state.candles < HISTORY_LIMIT ? REFRESH_SHORT_MS : REFRESH_MS);
}

const TAPE_KEPT = 2000; // trades the page keeps (it shows the newest 25)

function tradeKey(t) { return `${t.time_ms}/${t.exchange_id}/${t.trade_id}`; }

function addTrades(trades) {
  for (const trade of trades) {
    const key = tradeKey(trade);
    if (state.seen.has(key)) continue;
    state.seen.add(key);
    state.trades.push(trade);
  }
  state.trades.sort((a, b) => a.time_ms - b.time_ms);
  state.trades = state.trades.slice(-TAPE_KEPT);
  // The keys go with the trades they stand for, or an open page would keep every one it saw.
  if (state.seen.size > 2 * TAPE_KEPT) state.seen = new Set(state.trades.map(tradeKey));
  $("tape").innerHTML = state.trades.slice(-25).reverse().map((t) =>
    `<tr class="${t.side}"><td>${new Date(t.time_ms).toISOString().slice(11, 23)}</td>` +
    `<td>${t.price}</td><td>${decimal(t.size)}</td></tr>`).join("");
}

// 5.16e-7 as 0.00000051609018: a size in full, as an exchange shows it.
const decimal = (value) => typeof value === "number"
  ? value.toLocaleString("en-US", { maximumSignificantDigits: 15, useGrouping: false }) : value;

function addQuotes(quotes) {
  for (const quote of quotes) state.book.set(quote.exchange_id, quote);
  const all = [...state.book.values()];
  if (!all.length) return;
  const bid = Math.max(...all.map((q) => q.bid_price));
  const ask = Math.min(...all.map((q) => q.ask_price));
  state.bid = bid; state.ask = ask;
  $("book").innerHTML = `<span class="buy">${bid}</span> / <span class="sell">${ask}</span>` +
    ` &nbsp; spread ${(ask - bid).toPrecision(4)}` + (bid > ask ? " (crossed: exchanges disagree)" : "");
}

function status(text, bad) { $("status").textContent = text; $("status").className = bad ? "bad" : ""; }

function connect() {
  const generation = state.generation;
  const query = new URLSearchParams({ trades: state.pair, quotes: state.pair,
    candles: state.pair, interval: state.interval, tz: state.tz });
  if (state.seq !== null) query.set("since", state.seq);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = ["tickpipe", ...(token ? [`bearer.${token}`] : [])];
  const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`, protocols);
  state.socket = socket;
  socket.onmessage = (event) => {
    if (generation !== state.generation) return;
    const message = JSON.parse(event.data);
    state.seq = message.seq;
    if (message.type === "ready") { state.live = true; status("live"); }
    if (message.type !== "update") return;
    addTrades(message.trades);
    addQuotes(message.quotes);
    for (const c of message.candles.sort((a, b) => a.candle.timestamp - b.candle.timestamp)) {
      draw(c.candle);
      state.loading.forEach((pushed) => pushed.push(c.candle));
    }
  };
  socket.onclose = (event) => {
    if (generation !== state.generation) return;
    state.live = false;
    if (event.code === 4001) { status(event.reason, true); poll(); return; }
    if (event.code === 4010) { state.seq = null; loadHistory(); }
    state.reconnects += 1;
    status(`reconnecting (${event.code})`, true);
    setTimeout(connect, Math.min(5000, 250 * state.reconnects));
  };
}

// The SQLite profile does not push: the page polls instead.
function poll() { setTimeout(async () => { await loadHistory(); poll(); }, 5000); }

// Stocks, forex and indices: candles, the tape (stock trades, index values) and the book
// (the NBBO, the forex contributors' best) every two seconds.
const MARKET_ROWS = {
  stocks: { tape: "trades", book: "quotes" }, forex: { book: "quotes" }, indices: { tape: "values" },
};

async function pollMarket(generation) {
  if (generation !== state.generation) return;
  const rows = MARKET_ROWS[state.market];
  try {
    await loadHistory();
    if (rows.tape) {
      const tape = (await get(`${route(rows.tape)}?limit=50`)).data;
      addTrades(tape.map((r) => ({ time_ms: Date.parse(`${r.ts}Z`), price: r.price ?? r.value,
        size: r.decimal_size ?? r.size ?? "", exchange_id: r.exchange_id ?? 0,
        trade_id: r.trade_id ?? r.ts, side: "" })));
    }
    if (rows.book) {
      const quotes = (await get(`${route(rows.book)}?limit=20`)).data;
      addQuotes(quotes.map((q) => ({ exchange_id: q.exchange_id ?? "nbbo", bid_price: q.bid_price,
        ask_price: q.ask_price })));
    }
    state.live = true;
    status(`polling ${state.market} (live push serves crypto)`);
  } catch (error) { status(`no ${state.market} data yet (${error.message})`, true); }
  setTimeout(() => pollMarket(generation), 2000);
}

async function switchTo() {
  state.generation += 1;
  if (state.socket) state.socket.close();
  const [market, pair] = $("pair").value.split("|");
  Object.assign(state, { pair, market, interval: $("interval").value, tz: $("tz").value,
    seq: null, trades: [], seen: new Set(), book: new Map(), live: false });
  $("tape").innerHTML = ""; $("book").textContent = "-";
  await loadHistory();
  chart.timeScale().scrollToRealTime(); // (not on a reload: the reader may have scrolled back)
  if (market === "crypto") { connect(); refreshHistory(state.generation); }
  else pollMarket(state.generation);
}

async function health() {
  try {
    const h = await get("/health");
    const views = (h.views || []).map((v) => `${v.view}: ${v.status}${v.serving ? "" : " (base table answers)"}`);
    $("health").innerHTML = [
      ["database", h.database], ["newest trade", h.newest_trade_age_s === null ? "-" : `${h.newest_trade_age_s.toFixed(1)} s ago`],
      ["page reconnects", state.reconnects], ["quote gaps", (h.quote_gaps || []).length],
      ...views.map((v) => ["view", v]),
    ].map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
  } catch (error) { $("health").innerHTML = `<tr><td class="bad">${error.message}</td></tr>`; }
}

async function symbolsOf(market) {
  const path = market === "crypto" ? "/api/market/prices" : `/api/${market}/prices`;
  return (await get(path).catch(() => ({ prices: [] }))).prices.map((p) => p.symbol);
}

async function start() {
  const markets = ["crypto", "stocks", "forex", "indices"];
  const listed = Object.fromEntries(await Promise.all(markets.map(async (m) => [m, await symbolsOf(m)])));
  const pairs = listed.crypto;
  const asked = params.get("pair");
  const wanted = asked ? (asked.includes("|") ? asked : `crypto|${asked}`)
    : `crypto|${pairs.includes("BTC-USD") ? "BTC-USD" : pairs[0] || "BTC-USD"}`;
  const [wantedMarket, wantedPair] = wanted.split("|");
  if (!listed[wantedMarket].includes(wantedPair)) listed[wantedMarket].unshift(wantedPair); // bars, no trade yet
  $("pair").innerHTML = markets.filter((m) => listed[m].length).map((m) =>
    `<optgroup label="${m}">` + listed[m].map((s) => `<option value="${m}|${s}">${s}</option>`).join("") +
    "</optgroup>").join("");
  $("pair").value = wanted;
  if (params.get("interval")) $("interval").value = params.get("interval");
  for (const id of ["pair", "interval", "tz"]) $(id).onchange = switchTo;
  await switchTo();
  health();
  setInterval(health, 5000);
}

start();
