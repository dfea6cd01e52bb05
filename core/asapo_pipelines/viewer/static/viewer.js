// The viewer page: renders what /events pushes. Every string from the pipeline is shown with
// textContent (never innerHTML); the graph SVG is built and escaped by the server and parsed as
// XML here.
'use strict';

// `loading`: a worker importing its unit's runtime (larch takes seconds) or restoring its state
const STATES = ['waiting', 'starting', 'loading', 'running', 'restarting', 'failed', 'stopped',
  'finished', 'exited', 'replayed'];
const graphNodes = new Map();
const plotDivs = new Map();
const plotSeen = new Map();  // plot id -> the JSON last drawn, to skip redrawing what is unchanged
const errorItems = new Map();
let streamCounts = {};

function $(selector) { return document.querySelector(selector); }

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function stateName(state) { return STATES.includes(state) ? state : 'waiting'; }

function fmtTime(seconds) {
  if (!seconds) return '';
  return new Date(seconds * 1000).toLocaleTimeString();
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function setField(group, field, text) {
  const node = group.querySelector('[data-field="' + field + '"]');
  if (node) node.textContent = text;
}

function numCell(value) { return el('td', value, 'num'); }

// every unit in a final state: the run is over, whatever the connection does
// (`replayed`: a source of a reprocess, which never runs)
const FINAL = ['finished', 'failed', 'stopped', 'replayed'];
let runEnded = false;
// the run as a whole (the `run` event): its recorded end, or `lost` as `pipeline status` says
let run = null;

function showConnection(open) {
  const conn = $('#conn');
  if (run && run.state === 'lost') { conn.textContent = 'run lost'; conn.className = 'conn lost'; return; }
  if (runEnded || (run && run.ended)) { conn.textContent = 'run ended'; conn.className = 'conn ended'; return; }
  conn.textContent = open ? 'live' : 'reconnecting';
  conn.className = 'conn ' + (open ? 'live' : 'reconnecting');
}

// a sentence of the CLI's with its `commands` set as code (the odd parts between backticks)
function showCommands(node, text) {
  node.replaceChildren(...text.split('`').map((part, i) => (i % 2 ? el('code', part) :
    document.createTextNode(part))));
}

function showRun(section) {
  run = section;
  const note = $('#run-note');
  const said = section.state === 'lost' || (section.ended && section.state !== 'complete');
  note.hidden = !(said && section.message);
  note.textContent = note.hidden ? '' : 'run ' + section.id + ' ' + section.state + ': ' + section.message;
  showEdited();
  showConnection(true);
}

// the file was edited while the run goes on: `pipeline status` warns in these words too; not
// once every unit ended, which the units' events may tell before the next `run` event does
// (the page said "run ended" beside a warning that the running units would not apply an edit)
function showEdited() {
  const edited = (!runEnded && run && run.edited) || '';
  $('#edit-note').hidden = !edited;
  showCommands($('#edit-text'), edited);
}

// a text of a graph node squeezed into its box when it would run past it (large counts)
function fitText(group, field) {
  const node = group.querySelector('[data-field="' + field + '"]');
  const box = group.querySelector('rect');
  if (!node || !box || typeof node.getComputedTextLength !== 'function') return;
  node.removeAttribute('textLength');
  node.removeAttribute('lengthAdjust');
  const room = box.width.baseVal.value - 2 * (node.x.baseVal[0].value - box.x.baseVal.value);
  if (room > 0 && node.getComputedTextLength() > room) {
    node.setAttribute('textLength', String(room));
    node.setAttribute('lengthAdjust', 'spacingAndGlyphs');
  }
}

// the `redelivered` column (messages handed again after a worker was killed; `processed`
// counts each once) shows, as in `pipeline status`, only once some unit has any
function showRedeliveredColumn(shown) {
  const head = $('#units thead tr');
  const cell = head.querySelector('th[data-column="redelivered"]');
  if (shown && !cell) {
    const th = el('th', 'redelivered');
    th.dataset.column = 'redelivered';
    head.append(th);
  } else if (!shown && cell) {
    cell.remove();
  }
}

function busyText(seconds) { return 'busy ' + Math.round(seconds) + 's'; }

// the units table's state cell: the unit's state, or its busy text with what it is busy with;
// for replicas in different states (`replica_states`), each part as `pipeline status` says it
// per replica, counted and in its own state's colour ("1 of 2 busy 40s (importing the unit's
// runtime); 1 of 2 busy 12s (files/default#1)"): one loading replica does not hide another
// long in process()
function stateCell(u, state) {
  const cell = el('td', null, 'state state-' + state);
  const parts = u.replica_states || [];
  if (parts.length === 0) {
    cell.textContent = u.busy_seconds == null ? String(u.state) :
      busyText(u.busy_seconds) + ' (' + u.busy_with + ')';
    return cell;
  }
  parts.forEach((p, i) => {
    const said = p.busy_seconds == null ? String(p.state) :
      busyText(p.busy_seconds) + ' (' + p.busy_with + ')';
    if (i > 0) cell.append('; ');
    cell.append(el('span', p.replicas + ' of ' + u.replicas + ' ' + said, 'state-' + stateName(p.state)));
  });
  return cell;
}

function showUnits(units) {
  const body = $('#units tbody');
  const states = Object.values(units).map((u) => stateName(u.state));
  const ended = states.length > 0 && states.every((s) => FINAL.includes(s));
  if (ended !== runEnded) { runEnded = ended; showEdited(); showConnection(true); }
  const again = Object.values(units).some((u) => u.redelivered > 0);
  showRedeliveredColumn(again);
  const rows = [];
  for (const [instance, u] of Object.entries(units)) {
    const state = stateName(u.state);
    // a state the page has no colour for (a newer worker's) is still said as the worker says it
    const said = String(u.state);
    // a unit long in one call (a fit, a model's inference, a hang) reads as busy, not idle
    const busy = u.busy_seconds == null ? '' : busyText(u.busy_seconds);
    const group = graphNodes.get('u:' + instance);
    if (group) {
      group.setAttribute('class', 'unit state-' + state);
      setField(group, 'state', busy || said);
      setField(group, 'line1', 'processed ' + u.processed + ' \u00b7 ' + u.rate.toFixed(1) + '/s');
      setField(group, 'line2', 'lag ' + u.lag_seconds.toFixed(1) + 's \u00b7 errors ' + u.errors +
        ' \u00b7 restarts ' + u.restarts + (u.redelivered ? ' \u00b7 redelivered ' + u.redelivered : ''));
      fitText(group, 'line2');
    }
    const row = el('tr');
    row.dataset.unit = instance;
    row.append(el('td', instance),
      stateCell(u, state), numCell(u.processed),
      numCell(u.rate.toFixed(2)), numCell(u.backlog ?? '-'), numCell(u.lag_seconds.toFixed(2)),
      numCell(u.errors), numCell(u.restarts));
    if (again) row.append(numCell(u.redelivered));
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function showStreams(streams) {
  const body = $('#streams tbody');
  const rows = [];
  const counts = {};
  for (const s of streams) {
    counts[s.name] = s.messages;
    const lagText = Object.entries(s.lag).map(([unit, n]) => unit + ': ' + n).join(', ');
    const row = el('tr');
    row.append(el('td', s.name), numCell(s.scans), numCell(s.messages), numCell(s.bytes === null ? '\u2013' : fmtBytes(s.bytes)),
      el('td', s.finished ? 'yes' : 'no'), el('td', lagText || '\u2013'));
    rows.push(row);
    const group = graphNodes.get('s:' + s.name);
    if (group) {
      const lagging = Object.values(s.lag).some((n) => n > 0);
      group.setAttribute('class', 'stream' + (lagging ? ' lagging' : ''));
      setField(group, 'line1', s.messages + ' messages' + (s.scans > 1 ? ' \u00b7 ' + s.scans +
        ' scans' : ''));
    }
  }
  body.replaceChildren(...rows);
  const selected = $('#stream-select').value;
  if (selected && counts[selected] !== streamCounts[selected]) loadMessages();
  streamCounts = counts;
}

function showErrors(errors) {
  $('#error-count').textContent = String(errors.length);
  const list = $('#errors');
  const keep = new Set();
  let previous = null;
  for (const e of errors) {  // newest first
    const key = e.stream + '#' + e.id;
    keep.add(key);
    let item = errorItems.get(key);
    if (!item) {
      item = el('li');
      const details = el('details');
      const summary = el('summary');
      summary.append(el('strong', e.unit), document.createTextNode(' ' + fmtTime(e.time) + ' '),
        el('code', e.exception + ': ' + e.error));
      details.append(summary, el('div', 'message: ' + e.message, 'muted'), el('pre', e.traceback));
      item.append(details);
      errorItems.set(key, item);
    }
    if (previous === null) list.prepend(item); else previous.after(item);
    previous = item;
  }
  for (const [key, item] of errorItems) {
    if (!keep.has(key)) { item.remove(); errorItems.delete(key); }
  }
}

// Plotly reads a few HTML-like tags in names and labels; escape them so they show as typed.
function plotText(value) {
  return String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function xValue(item) { return item.time ? new Date(item.x * 1000) : item.x; }

// the items of a hint split by a field (`split_by`: PlotHint.series), grouped by the series
// they name, in the order the collector sends them (each series' first point first)
function bySeries(items) {
  const groups = new Map();
  for (const item of items) {
    if (!groups.has(item.series)) groups.set(item.series, []);
    groups.get(item.series).push(item);
  }
  return groups;
}

function scalarTrace(items, name) {
  const textual = items.some((item) => typeof item.y === 'string');
  // join the points only while x only grows (a unit that restarted from scratch does not)
  const xs = items.map((item) => item.x);
  const growing = xs.every((x, i) => i === 0 || x >= xs[i - 1]);
  return {
    type: 'scatter', mode: textual || !growing ? 'markers' : 'lines+markers',
    x: items.map(xValue), y: items.map((item) => item.y),
    text: items.map((item) => plotText(item.text)), name: plotText(name),
    marker: { size: textual ? 11 : 6 },
  };
}

// the colours of overlaid lines: the newest stands out, the earlier ones are grey under it
const NEWEST = '#1f5fa8';
const EARLIER = '#9aa6b2';
const MERGES = ['#e8710a', '#188038', '#9334e6', '#c5221f', '#12b5cb'];

// one hint's lines (a unit's scans, or a sample's merges): the newest of each series drawn
// strong and named in the legend; the earlier ones thin and grey, one legend entry for all
// ("4 earlier scans"), each named when hovered
function xyTraces(series, merged) {
  const traces = [];
  let colour = 0;
  const groups = series.split_by ? bySeries(series.items) : new Map([[null, series.items]]);
  for (const items of groups.values()) {
    if (!items.length) continue;  // a hint of the figure with no line yet
    const group = series.unit + ':' + (items[0].series ?? '');
    const older = items.length - 1;
    items.forEach((item, i) => {
      const newest = i === older;
      const name = plotText(item.name);
      const trace = { type: 'scatter', mode: 'lines', x: item.x, y: item.y, name };
      if (merged) {
        // a merge (the figure's last hint) is dashed and see-through: its scans show under it
        Object.assign(trace, { line: { width: 2.5, dash: 'dash', color: MERGES[colour % MERGES.length] },
          opacity: newest ? 0.85 : 0.4, showlegend: newest });
      } else if (newest) {
        Object.assign(trace, { line: { width: 2, color: NEWEST }, legendgroup: group + ':newest' });
      } else {
        Object.assign(trace, {
          line: { width: 1, color: EARLIER }, opacity: 0.5 + 0.4 * (i + 1) / items.length,
          legendgroup: group + ':earlier', showlegend: i === 0,
          hovertemplate: '%{x}, %{y}<extra>' + name.replace(/%/g, '%%') + '</extra>',
        });
        if (i === 0) trace.name = older + ' earlier ' + (older === 1 ? 'line' : 'lines');
      }
      traces.push(trace);
    });
    colour += 1;
  }
  return traces;
}

// the x range an xy plot opens at: around the newest line's focus (an edge's E0), kept while
// the focus stays in it, so a zoom of the user's survives the next scan (Plotly keeps it
// while the range the page sends does not change)
const focusRanges = new Map();

function focusRange(plot) {
  let focus = null;
  let window = null;
  for (const series of plot.series) {
    if (!series.x_window) continue;
    for (const item of series.items) {
      if (typeof item.focus === 'number') { focus = item.focus; window = series.x_window; }
    }
  }
  const kept = focusRanges.get(plot.id);
  if (focus === null) return kept || null;
  if (!kept || focus < kept[0] || focus > kept[1]) {
    focusRanges.set(plot.id, [focus + window[0], focus + window[1]]);
  }
  return focusRanges.get(plot.id);
}

// a number as a scientist reads it on a level's label: 1.2e-4, 0.35, 7112
function fmtNumber(value) {
  if (typeof value !== 'number') return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-2 || size >= 1e5)) {
    return value.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
  }
  return String(Number(value.toPrecision(3)));
}

function tracesFor(plot) {
  const traces = [];
  plot.series.forEach((series, index) => {
    const last = index === plot.series.length - 1 && plot.series.length > 1;
    if (series.kind === 'xy') {
      traces.push(...xyTraces(series, last));
    } else if (series.kind === 'scalar' && series.split_by) {
      // one trace per series (a sample's merges): its own curve, named in the legend
      for (const [name, items] of bySeries(series.items)) traces.push(scalarTrace(items, name));
    } else if (series.kind === 'scalar' && index > 0 && series.title) {
      // a point added to another hint's figure (the agent's prediction on the noise plot):
      // named by its hint's title, marked apart from the measured points; none in the
      // legend while the newest message has no such point (the target reached)
      if (!series.items.some((item) => item.x !== null && item.y !== null)) return;
      const trace = scalarTrace(series.items, series.title);
      trace.mode = 'markers';
      trace.marker = { size: 12, symbol: 'diamond-open', line: { width: 2 } };
      traces.push(trace);
    } else if (series.kind === 'scalar') {
      traces.push(scalarTrace(series.items, series.unit));
    } else if (series.kind === 'hline' && series.items.length) {
      // a level (a target) across the plot: a shape, added by the layout (see hlines)
    } else if (series.kind === 'image' && series.items.length) {
      traces.push({ type: 'heatmap', z: series.items[series.items.length - 1].z,
        name: plotText(series.unit), colorscale: 'Viridis' });
    }
  });
  return traces;
}

// levels (`hline` hints) as horizontal lines spanning the plot, with their name at the right
function hlines(plot) {
  const shapes = [];
  const annotations = [];
  const colours = ['#d23b3b', '#5f6368', '#9334e6'];
  for (const series of plot.series) {
    if (series.kind !== 'hline' || !series.items.length) continue;
    const item = series.items[series.items.length - 1];
    const colour = colours[shapes.length % colours.length];
    // every other label on the left: a floor close under the target stays readable
    const left = shapes.length % 2 === 1;
    shapes.push({ type: 'line', xref: 'paper', x0: 0, x1: 1, y0: item.y, y1: item.y,
      line: { color: colour, width: 1.5, dash: 'dot' } });
    annotations.push({ xref: 'paper', x: left ? 0 : 1, xanchor: left ? 'left' : 'right', y: item.y,
      yanchor: left ? 'top' : 'bottom', text: plotText(item.name + ' ' + fmtNumber(item.y) + (item.text ? ' ' + item.text : '')),
      showarrow: false, font: { size: 10, color: colour } });
  }
  return { shapes, annotations };
}

// what an empty plot waits for: "waiting for the first result of merge (stream merged)"
function waitingText(sources) {
  const names = sources.map((s) => s.unit + ' (stream ' + s.stream + ')');
  return 'waiting for the first result of ' + (names.join(' or ') || 'its units');
}

// a plot's card: its title as a heading above the figure (Plotly's toolbar, at the figure's
// top right, never covers it) and, until data arrive, what it waits for
function plotCard(id, title, sources) {
  let div = plotDivs.get(id);
  if (!div) {
    const card = el('div', null, 'plot-card');
    card.append(el('h3', title, 'plot-title'), el('p', waitingText(sources), 'plot-waiting muted'));
    div = el('div', null, 'plot');
    div.dataset.plot = id;
    div.hidden = true;  // shown with its first data
    card.append(div);
    $('#plots').append(card);
    plotDivs.set(id, div);
  }
  return div;
}

// the plots the units declare, known before the first update: the page never says there is
// no plot while it waits for data
function declarePlots(declared) {
  const note = $('#no-plots');
  note.hidden = declared.length > 0;
  note.textContent = 'No unit of this pipeline declares a plot.';
  for (const plot of declared) plotCard(plot.id, plot.title, plot.from);
}

function hasData(plot) {
  return plot.series.some((s) => s.kind !== 'hline' && s.items.length > 0);
}

function showPlots(plots) {
  if (typeof Plotly === 'undefined') return;
  for (const plot of plots) {
    const json = JSON.stringify(plot);
    if (plotSeen.get(plot.id) === json) continue;
    plotSeen.set(plot.id, json);
    const sources = plot.series.filter((s) => s.kind !== 'hline');
    const div = plotCard(plot.id, plot.title, sources);
    const waiting = div.parentNode.querySelector('.plot-waiting');
    waiting.textContent = waitingText(sources);
    waiting.hidden = hasData(plot);
    div.hidden = !hasData(plot);
    if (div.hidden) continue;  // no empty axes: the sentence above says what is coming
    const first = plot.series.find((s) => s.kind !== 'hline') || plot.series[0] || {};
    const levels = hlines(plot);
    const range = focusRange(plot);
    const xaxis = { title: { text: plotText(first.x_title || '') }, automargin: true };
    if (range) Object.assign(xaxis, { range, autorange: false });
    const layout = {
      // the title is the card's heading; the top margin is the toolbar's row
      margin: { l: 55, r: 10, t: 28, b: 42 },
      xaxis,
      yaxis: { title: { text: plotText(first.y_title || '') }, automargin: true },
      shapes: levels.shapes, annotations: levels.annotations,
      // split series are told apart by their names only; the legend goes under the figure,
      // so the data get the card's whole width
      showlegend: plot.kind === 'xy' || plot.series.some((s) => s.split_by),
      // at the container's foot (Plotly makes room for it): never over the axis title
      legend: { font: { size: 10 }, orientation: 'h', x: 0, xanchor: 'left', yref: 'container',
        y: 0, yanchor: 'bottom' },
      uirevision: plot.id,
    };
    Plotly.react(div, tracesFor(plot), layout, { displaylogo: false, responsive: true });
    div.dataset.traces = String(div.data ? div.data.length : 0);
    div.dataset.levels = String(levels.shapes.length);
  }
}

async function loadMessages() {
  const stream = $('#stream-select').value;
  if (!stream) return;
  const response = await fetch('/api/messages?n=6&stream=' + encodeURIComponent(stream));
  const body = await response.json();
  if ($('#stream-select').value !== stream) return;
  const rows = (body.messages || []).map((m) => {
    const row = el('tr');
    const meta = el('td');
    meta.append(el('pre', JSON.stringify(m.metadata, null, 1)));
    meta.className = 'meta';
    const payload = el('td');
    payload.append(el('pre', m.payload));
    row.append(el('td', m.stream), numCell(m.id), el('td', fmtTime(m.time)),
      numCell(fmtBytes(m.size)), meta, payload);
    return row;
  });
  $('#messages tbody').replaceChildren(...rows);
}

function connect() {
  const events = new EventSource('/events');
  const handle = (name, show) => events.addEventListener(name, (event) => {
    show(JSON.parse(event.data));
    $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  });
  handle('run', showRun);
  handle('units', showUnits);
  handle('streams', showStreams);
  handle('errors', showErrors);
  handle('plots', showPlots);
  handle('status', (status) => {
    const problem = $('#problem');
    problem.hidden = !status.error;
    problem.textContent = status.error ? 'cannot read the transport: ' + status.error : '';
  });
  events.onopen = () => showConnection(true);
  events.onerror = () => showConnection(false);
}

async function start() {
  const info = await (await fetch('/api/pipeline')).json();
  $('#name').textContent = info.name;
  document.title = 'pipeline ' + info.name;
  const doc = new DOMParser().parseFromString(info.svg, 'image/svg+xml');
  const svg = document.importNode(doc.documentElement, true);
  $('#graph').replaceChildren(svg);
  declarePlots(info.plots || []);
  // a wide graph shrinks to the page's width (CSS max-width): it never scrolls sideways
  svg.querySelectorAll('[data-node]').forEach((g) => graphNodes.set(g.getAttribute('data-node'), g));
  const select = $('#stream-select');
  for (const name of info.streams) {
    const option = el('option', name);
    option.value = name;
    select.append(option);
  }
  select.addEventListener('change', loadMessages);
  connect();
  loadMessages();
}

start();
