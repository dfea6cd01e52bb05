// The suggestion inbox: the queue bridge's suggestions with Approve and Reject. Decisions are
// POSTed with the token GET /api/inbox handed to this page (the server accepts them only from
// its own origin, with a token it issued). Strings are shown with textContent only.
'use strict';

(function () {
  const section = document.getElementById('inbox-section');
  if (!section) return;
  const DECIDABLE = ['pending', 'held', 'failed'];
  let token = null;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function numbers(values) {
    return Object.entries(values || {}).slice(0, 4).map(([k, v]) =>
      k + ' ' + (typeof v === 'number' && !Number.isInteger(v) ? v.toPrecision(3) : v)).join(', ');
  }

  // whether the note shown is the listing's own (a queue server that does not answer): it goes
  // when the listing no longer says it, while the outcome of a decision stays until the next
  let listingSaid = false;

  function say(text, bad, fromListing) {
    const note = document.getElementById('inbox-note');
    note.textContent = text || '';
    note.className = bad ? 'problem' : 'muted';
    listingSaid = Boolean(fromListing);
  }

  async function decide(uid, action, reason) {
    const answer = await fetch('/api/inbox/' + encodeURIComponent(uid) + '/' + action, {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-Inbox-Token': token || ''},
      body: JSON.stringify({reason: reason}),
    });
    const data = await answer.json();
    if (!answer.ok) say(data.error || ('refused (' + answer.status + ')'), true);
    else say('suggestion ' + uid.slice(0, 12) + ': ' + data.suggestion.state, false);
    await load();
  }

  function row(s) {
    const tr = el('tr');
    tr.dataset.uid = s.uid;
    const why = s.reason + (s.state_reason ? ' [' + s.state_reason + ']' : '');
    tr.append(el('td', s.uid.slice(0, 12), 'mono'), el('td', s.state, 'state inbox-' + s.state),
      el('td', s.action), el('td', s.target), el('td', s.scans, 'num'),
      el('td', s.confidence === null ? '' : s.confidence.toFixed(2), 'num'), el('td', why),
      el('td', numbers(s.numbers)));
    const cell = el('td');
    if (DECIDABLE.includes(s.state)) {
      const approve = el('button', 'Approve');
      approve.dataset.action = 'approve';
      approve.addEventListener('click', () => decide(s.uid, 'approve', ''));
      const reason = el('input');
      reason.placeholder = 'reason to reject';
      reason.setAttribute('aria-label', 'reason to reject');
      const reject = el('button', 'Reject');
      reject.dataset.action = 'reject';
      reject.addEventListener('click', () => decide(s.uid, 'reject', reason.value));
      cell.append(approve, reason, reject);
    }
    tr.append(cell);
    return tr;
  }

  async function load() {
    let data;
    try {
      const answer = await fetch('/api/inbox', {cache: 'no-store'});
      data = await answer.json();
    } catch (err) {
      return;  // the server is gone; the connection badge says so
    }
    if (!data.available) { section.hidden = true; return; }
    section.hidden = false;
    if (data.token) token = data.token;
    // the listing's notes say what it cannot vouch for (states as last seen): a problem
    if (data.error) say(data.error, true, true);
    else if ((data.notes || []).length) say(data.notes.join('; '), true, true);
    else if (listingSaid) say('', false, false);
    const body = document.querySelector('#inbox tbody');
    // keep a row being typed into: replace the table only when nobody is editing a reason
    const typing = document.activeElement;
    if (typing && typing.tagName === 'INPUT' && typing.value && body.contains(typing)) return;
    body.replaceChildren(...(data.suggestions || []).map(row));
    document.getElementById('inbox-count').textContent = String((data.suggestions || []).length);
  }

  // one listing at a time: while the queue server does not answer a listing takes its whole
  // timeout, longer than the interval
  let loading = false;
  async function tick() {
    if (loading) return;
    loading = true;
    try { await load(); } finally { loading = false; }
  }

  tick();
  setInterval(tick, 3000);
})();
