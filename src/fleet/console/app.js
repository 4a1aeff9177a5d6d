// tend fleet console: a single page over the JSON API under /api/. Plain JavaScript, no
// libraries, no inline code (the server's Content-Security-Policy forbids it). Untrusted text
// only ever goes into the page through textContent, never as HTML.
'use strict';

const S = { me: null, csrf: null, timer: null, list: { sort: 'device_id', order: 'asc', offset: 0, limit: 50, filters: {} } };

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v; else e.setAttribute(k, String(v));
  }
  for (const c of kids.flat()) if (c) e.appendChild(c);
  return e;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts) {
  const o = Object.assign({ method: 'GET', credentials: 'same-origin', headers: {} }, opts || {});
  if (o.method !== 'GET') {
    o.headers['Content-Type'] = 'application/json';
    if (S.csrf) o.headers['X-CSRF-Token'] = S.csrf;
    o.body = JSON.stringify(o.body || {});
  }
  const r = await fetch(path, o);
  let body = null;
  const type = r.headers.get('Content-Type') || '';
  if (type.includes('application/json')) body = await r.json();
  if (r.status === 401 && path !== '/api/login') {
    S.me = null; S.csrf = null;
    showLogin('Your session ended; log in again.');
    throw new ApiError(401, 'authentication required');
  }
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || r.statusText);
  return body;
}

function isOperator() { return S.me && S.me.role === 'operator'; }
function main() { return document.getElementById('main'); }
// replaceChildren() would print null as "null" and an array as text: flatten and drop the gaps.
function show(...nodes) { main().replaceChildren(...nodes.flat(2).filter(n => n !== null && n !== undefined && n !== false)); }
function setStatus(text) { document.getElementById('status-line').textContent = text; }
function clearTimer() { if (S.timer) { clearInterval(S.timer); S.timer = null; } }

function ago(ms) {
  if (!ms) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
  return (s / 86400).toFixed(1) + ' d ago';
}
function iso(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–'; }
function fmt(x, digits) { return x === null || x === undefined ? '–' : Number(x).toFixed(digits); }
function badge(text, cls) { return el('span', { class: 'badge ' + (cls || text) , text }); }

// ---- login -----------------------------------------------------------------------------------

function showLogin(message) {
  clearTimer();
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const input = el('input', { id: 'login-token', type: 'password', autocomplete: 'off', placeholder: 'tend_…' });
  const err = el('p', { id: 'login-error', class: 'error', text: message || '' });
  const form = el('form', { class: 'card login', id: 'login-form' },
    el('h1', { text: 'Log in' }),
    el('p', { class: 'muted', text: 'Paste an access token (tend fleet token create).' }),
    input, el('button', { id: 'login-submit', type: 'submit', text: 'Log in' }), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('/api/login', { method: 'POST', body: { token: input.value.trim() } });
      S.me = { name: r.name, role: r.role }; S.csrf = r.csrf;
      onLoggedIn();
      if (!location.hash || location.hash === '#/login') location.hash = '#/devices'; else route();
    } catch (e) { err.textContent = e.message; }
  });
  show(form);
  input.focus();
}

function onLoggedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = S.me.name;
  const role = document.getElementById('who-role');
  role.textContent = S.me.role; role.className = 'badge ' + (S.me.role === 'operator' ? 'warn' : '');
}

async function logout() {
  try { await api('/api/logout', { method: 'POST' }); } catch (e) { /* ended anyway */ }
  S.me = null; S.csrf = null; showLogin('Logged out.');
}

// ---- device list -----------------------------------------------------------------------------

const COLUMNS = [
  ['device_id', 'Device'], ['factory', 'Factory'], [null, 'Lines / assets'], ['status', 'Status'],
  ['last_seen', 'Last message'], ['model', 'Model'], ['ota_version', 'OTA'], ['ota_state', 'OTA state'],
  ['alerts_1h', 'Alerts 1 h', 'num'], ['alerts_24h', 'Alerts 24 h', 'num'],
  ['backlog', 'Spool backlog', 'num'], ['dropped', 'Drops', 'num'], ['temp', 'Temp °C', 'num'],
];

function listQuery() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(S.list.filters)) if (v) p.set(k, v);
  p.set('sort', S.list.sort); p.set('order', S.list.order);
  p.set('offset', S.list.offset); p.set('limit', S.list.limit);
  return p.toString();
}

function filterForm(onChange) {
  const f = S.list.filters;
  const input = (name, label, ph) => el('label', {}, label,
    el('input', { name, value: f[name] || '', placeholder: ph || '', size: 12 }));
  const select = (name, label, options) => {
    const s = el('select', { name }, options.map(([v, t]) => el('option', { value: v, text: t, selected: (f[name] || '') === v })));
    return el('label', {}, label, s);
  };
  const form = el('form', { class: 'filters', id: 'device-filters' },
    input('q', 'Device id', 'contains…'), input('factory', 'Factory'), input('line', 'Line'),
    input('asset', 'Asset'), input('tag', 'Tag'),
    select('status', 'Status', [['', 'any'], ['online', 'online'], ['offline', 'offline'], ['unknown', 'unknown']]),
    select('ota', 'OTA', [['', 'any'], ['probation', 'probation'], ['serving', 'serving'], ['stale', 'stale'], ['rolled_back', 'rolled back'], ['none', 'no OTA state']]),
    el('button', { type: 'submit', text: 'Filter' }),
    el('button', { type: 'button', class: 'secondary', text: 'Clear', onclick: () => { S.list.filters = {}; S.list.offset = 0; onChange(true); } }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(form); S.list.filters = {};
    for (const [k, v] of d.entries()) if (v) S.list.filters[k] = v;
    S.list.offset = 0; onChange(true);
  });
  return form;
}

function deviceRow(d) {
  const ota = d.ota;
  return el('tr', { 'data-device': d.device_id },
    el('td', {}, el('a', { href: '#/device/' + encodeURIComponent(d.device_id), text: d.device_id })),
    el('td', { text: d.factory_id }),
    el('td', { text: (d.lines || []).join(', ') + ((d.assets || []).length ? ' / ' + d.assets.join(', ') : '') }),
    el('td', {}, el('span', { class: 'dot ' + d.status }), d.status),
    el('td', { title: d.last_seen, text: ago(d.last_seen_ms) }),
    el('td', { text: d.model_version || '–' }),
    el('td', { text: ota ? ota.model + ' v' + ota.current_version : '–' }),
    el('td', {}, ota ? badge(ota.state) : '–', ota && ota.stale ? badge('stale', 'bad') : null,
      ota && ota.last_rollback_reason ? el('span', { class: 'muted', title: ota.last_rollback_reason, text: ' ↺' + ota.rollbacks }) : null),
    el('td', { class: 'num', text: d.alerts_1h }), el('td', { class: 'num', text: d.alerts_24h }),
    el('td', { class: 'num', text: d.spool_backlog === null ? '–' : d.spool_backlog }),
    el('td', { class: 'num', text: d.spool_dropped === null ? '–' : d.spool_dropped }),
    el('td', { class: 'num', text: fmt(d.temp_c, 1) }));
}

async function renderDevices() {
  const table = el('table', { id: 'devices' });
  const info = el('span', { class: 'muted', id: 'device-count' });
  const prev = el('button', { type: 'button', class: 'secondary', id: 'page-prev', text: '← Previous' });
  const next = el('button', { type: 'button', class: 'secondary', id: 'page-next', text: 'Next →' });
  const pager = el('div', { class: 'pager' }, prev, next, info);
  const load = async (fromFilter) => {
    if (fromFilter) show(title, filterForm(load), pager, table);
    const r = await api('/api/devices?' + listQuery());
    const head = el('tr', {}, COLUMNS.map(([key, label, cls]) => {
      const sorted = key && S.list.sort === key;
      return el('th', {
        class: [key ? 'sortable' : '', sorted ? 'sorted' : '', sorted && S.list.order === 'desc' ? 'desc' : '', cls || ''].join(' '),
        'data-sort': key, text: label,
        onclick: key ? () => {
          if (S.list.sort === key) S.list.order = S.list.order === 'asc' ? 'desc' : 'asc';
          else { S.list.sort = key; S.list.order = 'asc'; }
          S.list.offset = 0; load(false);
        } : null,
      });
    }));
    table.replaceChildren(el('thead', {}, head), el('tbody', {}, r.devices.map(deviceRow)));
    const last = Math.min(r.total, r.offset + r.devices.length);
    info.textContent = r.total ? `${r.offset + 1}–${last} of ${r.total} devices` : 'no devices match';
    prev.disabled = r.offset === 0; next.disabled = last >= r.total;
    setStatus('fleet snapshot taken ' + r.taken);
  };
  prev.onclick = () => { S.list.offset = Math.max(0, S.list.offset - S.list.limit); load(false); };
  next.onclick = () => { S.list.offset += S.list.limit; load(false); };
  const title = el('h1', { text: 'Devices' });
  await load(true);
  S.timer = setInterval(() => load(false).catch(() => {}), 10000);
}

// ---- device page -----------------------------------------------------------------------------

function scorePlot(points, thresholds, minutes) {
  const W = 960, H = 280, L = 48, R = 90, T = 12, B = 28;
  const scores = points.filter(p => p.score !== null);
  // The window the operator chose, narrowed to the data when there is less of it.
  const now = Date.now();
  let t0 = now - minutes * 60000;
  if (scores.length) t0 = Math.max(t0, scores[0].t - Math.max(1000, (now - scores[0].t) * 0.03));
  let ymax = 1;
  for (const p of scores) ymax = Math.max(ymax, p.score);
  if (thresholds) for (const k of ['LOW', 'MEDIUM', 'HIGH']) if (thresholds[k]) ymax = Math.max(ymax, thresholds[k] * 1.15);
  ymax *= 1.05;
  const x = t => L + (W - L - R) * (t - t0) / (now - t0);
  const y = v => T + (H - T - B) * (1 - v / ymax);
  const g = svg('svg', { id: 'score-plot', class: 'plot', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': 'anomaly scores over time' });
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    g.appendChild(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    g.appendChild(svg('text', { class: 'tick', x: L - 6, y: y(v) + 4, 'text-anchor': 'end', text: v.toFixed(2) }));
  }
  for (let i = 0; i <= 6; i++) {
    const t = t0 + (now - t0) * i / 6;
    const d = new Date(t), span = now - t0;
    const label = span > 86400000 ? d.toISOString().slice(5, 10)
      : span > 3600000 ? d.toISOString().slice(11, 16) : d.toISOString().slice(11, 19);
    g.appendChild(svg('text', { class: 'tick', x: x(t), y: H - 8, 'text-anchor': 'middle', text: label }));
  }
  g.appendChild(svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  g.appendChild(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  if (thresholds) {
    for (const k of ['LOW', 'MEDIUM', 'HIGH']) {
      const v = thresholds[k];
      if (typeof v !== 'number') continue;
      g.appendChild(svg('line', { class: 'threshold ' + k, 'data-threshold': k, x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      g.appendChild(svg('text', { class: 'tlabel ' + k, x: W - R + 4, y: y(v) + 4, text: `${k} ${v}` }));
    }
  }
  if (scores.length > 1) {
    g.appendChild(svg('polyline', { class: 'series', points: scores.map(p => `${x(p.t).toFixed(1)},${y(p.score).toFixed(1)}`).join(' ') }));
  }
  for (const p of scores) {
    const c = svg('circle', { class: 'pt' + (p.alert ? ' alert' : ''), cx: x(p.t).toFixed(1), cy: y(p.score).toFixed(1), r: p.alert ? 3.2 : 2 });
    c.appendChild(svg('title', { text: `${iso(p.t)}  score ${p.score}  ${p.severity}${p.alert ? ' ALERT' : ''}  model v${p.model_version}` }));
    g.appendChild(c);
  }
  return g;
}

function kv(k, v) { return el('div', { class: 'card' }, el('div', { class: 'k', text: k }), el('div', { class: 'v' }, v)); }

function deviceActions(d, reload) {
  if (!isOperator()) return el('p', { class: 'muted', text: 'Viewers can look; actions need the operator role.' });
  const reason = el('input', { id: 'rollback-reason', placeholder: 'reason (audited)', size: 30 });
  const pinInput = el('input', { id: 'pin-version', type: 'number', min: 0, size: 6, placeholder: 'max v' });
  const tagInput = el('input', { id: 'tag-input', placeholder: 'tag', size: 10 });
  // The last action's result survives the reload that follows it (and the periodic ones).
  const last = S.actionResult && S.actionResult.device === d.device_id ? S.actionResult : null;
  const msg = el('span', { id: 'action-result', class: last ? last.cls : 'muted', text: last ? last.text : '' });
  const run = async (path, body, confirmText) => {
    if (confirmText && !window.confirm(confirmText)) return;
    try {
      const r = await api(path, { method: 'POST', body });
      S.actionResult = { device: d.device_id, cls: 'notice', text: r.note || 'done' };
    } catch (e) { S.actionResult = { device: d.device_id, cls: 'error', text: e.message }; }
    msg.className = S.actionResult.cls; msg.textContent = S.actionResult.text;
    await reload().catch(() => {});
  };
  const id = encodeURIComponent(d.device_id);
  const ota = d.ota;
  return el('div', { class: 'card' },
    el('div', { class: 'actions' },
      el('button', { id: 'rollback', class: 'danger', type: 'button', disabled: !ota,
        text: ota ? `Roll back from v${ota.current_version}` : 'Roll back',
        onclick: () => run(`/api/devices/${id}/rollback`, { reason: reason.value }, `Roll ${d.device_id} back from v${ota.current_version} to its backup model?`) }),
      reason),
    el('div', { class: 'actions' },
      pinInput,
      el('button', { id: 'pin', type: 'button', class: 'secondary', text: 'Pin (install nothing above)',
        onclick: () => run(`/api/devices/${id}/pin`, { max_version: Number(pinInput.value) }) }),
      el('button', { id: 'unpin', type: 'button', class: 'secondary', text: 'Unpin',
        onclick: () => run(`/api/devices/${id}/unpin`, {}) }),
      tagInput,
      el('button', { id: 'tag-add', type: 'button', class: 'secondary', text: 'Add tag',
        onclick: () => run(`/api/devices/${id}/tags`, { add: [tagInput.value.trim()] }) })),
    msg);
}

async function renderDevice(id) {
  S.actionResult = null;  // a result belongs to the page it was taken on
  const minutesSel = el('select', { id: 'plot-window' }, [[60, 'last hour'], [360, 'last 6 h'], [1440, 'last 24 h']].map(([v, t]) => el('option', { value: v, text: t, selected: v === 360 })));
  const load = async () => {
    const enc = encodeURIComponent(id), minutes = Number(minutesSel.value);
    const [d, scores, alerts, ota] = await Promise.all([
      api(`/api/devices/${enc}`), api(`/api/devices/${enc}/scores?minutes=${minutes}`),
      api(`/api/devices/${enc}/alerts?limit=50`), api(`/api/devices/${enc}/ota?limit=50`)]);
    const o = d.ota;
    const cards = el('div', { class: 'cards' },
      kv('Status', el('span', {}, el('span', { class: 'dot ' + d.status }), d.status)),
      kv('Last message', el('span', { title: d.last_seen, text: ago(d.last_seen_ms) })),
      kv('Model', o ? `${o.model} v${o.current_version}` : (d.model_version || '–')),
      kv('OTA', o ? el('span', {}, badge(o.state), o.stale ? badge('stale', 'bad') : null, ` · backup v${o.backup_version}`) : '–'),
      kv('Alerts 1 h / 24 h', `${d.alerts_1h} / ${d.alerts_24h}`),
      kv('Spool backlog / drops', `${d.spool_backlog ?? '–'} / ${d.spool_dropped ?? '–'}`),
      kv('CPU / temp', `${fmt(d.cpu_pct, 1)} % / ${fmt(d.temp_c, 1)} °C`),
      kv('Pins', Object.keys(d.pins).length ? Object.entries(d.pins).map(([n, v]) => `${n} ≤ v${v}`).join(', ') : 'none'));
    const alertRows = alerts.alerts.map(a => el('tr', { 'data-msg': a.msg_id },
      el('td', { text: a.timestamp }), el('td', { text: a.asset_id }), el('td', { class: 'num', text: fmt(a.score, 4) }),
      el('td', {}, badge(a.severity)), el('td', { class: 'top', text: (a.top_sensors || []).join(', ') }),
      el('td', { text: a.model_version ? 'v' + a.model_version : '–' }),
      el('td', {}, a.evidence ? el('img', { class: 'evidence', alt: a.image_ref, src: `/api/devices/${encodeURIComponent(id)}/alerts/${encodeURIComponent(a.msg_id)}/evidence` })
        : (a.image_ref ? el('code', { text: a.image_ref }) : '–'))));
    const otaRows = ota.events.map(e => el('tr', {}, el('td', { text: e.timestamp }), el('td', {}, badge(e.event, e.event === 'rolled_back' || e.event === 'refused' ? 'bad' : e.event === 'installed' ? 'ok' : '')),
      el('td', { text: `${e.model} v${e.current_version}` }), el('td', { text: 'v' + e.backup_version }), el('td', { text: e.reason || '' })));
    const health = d.health ? Object.entries(d.health).filter(([k]) => !['msg_id', 'seq', 'boot', 'device_id'].includes(k))
      .map(([k, v]) => el('tr', {}, el('td', { text: k }), el('td', { text: typeof v === 'object' ? JSON.stringify(v) : String(v) }))) : [];
    const rollouts = d.rollouts.map(r => el('li', { text: `${r.name} v${r.version}: wave ${r.wave} of ${r.waves} (${r.open ? 'open' : 'not open'}), rollout ${r.state}` }));
    const requests = d.rollback_requests.map(r => el('li', { 'data-request': r.id, text: `rollback from v${r.from_version} by ${r.actor} ${ago(r.ts_ms)}: ${r.status}` }));
    show(
      el('div', { class: 'row' }, el('h1', { class: 'grow', id: 'device-title', text: d.device_id }),
        el('span', { class: 'muted', text: `${d.factory_id} · ${(d.lines || []).join(', ')} · ${(d.assets || []).join(', ')}` }),
        ...(d.tags || []).map(t => badge(t, ''))),
      cards,
      el('h2', { text: 'Anomaly score' }),
      el('div', { class: 'row' }, minutesSel, el('span', { class: 'muted', text: `${scores.points.length} scores; dashed lines: the model's thresholds${d.thresholds ? '' : ' (not reported yet)'}` })),
      scorePlot(scores.points, d.thresholds, Number(minutesSel.value)),
      el('h2', { text: 'Actions' }), deviceActions(d, load),
      requests.length ? el('ul', { id: 'rollback-requests' }, requests) : null,
      rollouts.length ? el('div', {}, el('h2', { text: 'Staged rollouts' }), el('ul', {}, rollouts)) : null,
      el('h2', { text: `Alerts (${alerts.alerts.length} latest)` }),
      el('table', { id: 'alerts-table' }, el('thead', {}, el('tr', {}, ['Time', 'Asset', 'Score', 'Severity', 'Top features', 'Model', 'Evidence'].map(t => el('th', { text: t })))),
        el('tbody', {}, alertRows)),
      el('h2', { text: 'Model updates (OTA history)' }),
      el('table', { id: 'ota-table' }, el('thead', {}, el('tr', {}, ['Time', 'Event', 'Model', 'Backup', 'Reason'].map(t => el('th', { text: t })))),
        el('tbody', {}, otaRows)),
      el('h2', { text: 'Health (latest message)' }),
      el('table', { id: 'health-table' }, el('tbody', {}, health)));
    setStatus('device page loaded ' + new Date().toISOString());
  };
  minutesSel.onchange = () => load();
  await load();
  S.timer = setInterval(() => load().catch(() => {}), 15000);
}

// ---- rollouts --------------------------------------------------------------------------------

function waveBar(w) {
  const pct = n => w.devices ? (100 * n / w.devices) + '%' : '0';
  const bar = el('div', { class: 'bar', title: `${w.installed} installed, ${w.failed} failed, ${w.pending} pending of ${w.devices}` });
  const a = el('div', { class: 'installed' }); a.style.width = pct(w.installed);
  const b = el('div', { class: 'failed' }); b.style.width = pct(w.failed);
  bar.append(a, b);
  return bar;
}

async function renderRollouts() {
  const load = async () => {
    const r = await api('/api/rollouts');
    const msg = el('p', { id: 'rollout-result' });
    const act = async (ro, action) => {
      if (action === 'abort' && !window.confirm(`Abort the rollout of ${ro.name} v${ro.version}? This cannot be undone.`)) return;
      try {
        const res = await api(`/api/rollouts/${encodeURIComponent(ro.name)}/${ro.version}/${action}`, { method: 'POST' });
        msg.className = 'notice'; msg.textContent = `${ro.name} v${ro.version}: ${res.intent} (${res.note})`;
        await load();
      } catch (e) { msg.className = 'error'; msg.textContent = e.message; }
    };
    const blocks = r.rollouts.map(ro => {
      const key = `${ro.name}/${ro.version}`;
      const button = (action, label, cls) => el('button', { type: 'button', class: cls || 'secondary', 'data-action': action, 'data-rollout': key, text: label, onclick: () => act(ro, action) });
      const final = ro.state === 'aborted';
      const actions = isOperator() && !final ? el('div', { class: 'actions' },
        ro.state === 'pending' ? button('start', 'Start', '') : null,
        ro.state === 'running' ? button('pause', 'Pause') : null,
        ro.state === 'paused' ? button('resume', 'Resume', '') : null,
        button('abort', 'Abort', 'danger')) : null;
      const waves = ro.waves.map(w => el('tr', { class: w.open ? '' : 'wave-closed', 'data-wave': w.wave },
        el('td', { text: `${w.wave}` }), el('td', { class: 'num', text: `${w.percent} %` }),
        el('td', { text: w.soak_s ? `${w.soak_s} s` : '–' }), el('td', { text: w.open ? 'open since ' + w.opened : 'closed' }),
        el('td', {}, waveBar(w)), el('td', { class: 'num', text: `${w.installed} / ${w.failed} / ${w.pending} of ${w.devices}` })));
      return el('div', { class: 'card', 'data-rollout': key },
        el('div', { class: 'row' }, el('h2', { class: 'grow', text: `${ro.name} v${ro.version}` }), badge(ro.state), actions),
        ro.reason ? el('p', { class: ro.state === 'aborted' ? 'error' : 'muted', text: ro.reason }) : null,
        el('p', { class: 'muted', text: `abort when more than ${ro.plan.abort_failed_percent} % of a wave (and at least ${ro.plan.abort_min_failed} device) refuse or roll back; control statement v${ro.control_version}, updated ${ro.updated}${ro.intent ? `; operator: ${ro.intent.state} by ${ro.intent.actor}` : ''}` }),
        el('table', {}, el('thead', {}, el('tr', {}, ['Wave', 'Share', 'Soak', 'State', 'Progress', 'Installed / failed / pending'].map(t => el('th', { text: t })))), el('tbody', {}, waves)));
    });
    show(el('h1', { text: 'Staged rollouts' }), msg,
      blocks.length ? blocks : el('p', { class: 'muted', text: 'No release with a rollout plan yet (tend publish … --waves 5,25,100), or the controller (tend registry control) has not run.' }));
  };
  await load();
  S.timer = setInterval(() => load().catch(() => {}), 5000);
}

// ---- audit log -------------------------------------------------------------------------------

async function renderAudit() {
  let offset = 0;
  const load = async () => {
    const r = await api(`/api/audit?offset=${offset}&limit=100`);
    const rows = r.entries.map(a => el('tr', {}, el('td', { text: iso(a.ts_ms) }), el('td', { text: a.actor }), el('td', { text: a.role }),
      el('td', { text: a.action }), el('td', { text: a.target }), el('td', {}, badge(a.result === 'ok' ? 'ok' : a.result, a.result === 'ok' ? 'ok' : 'bad')),
      el('td', {}, el('code', { text: JSON.stringify(a.detail) }))));
    const prev = el('button', { type: 'button', class: 'secondary', text: '← Newer', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - 100); load(); } });
    const next = el('button', { type: 'button', class: 'secondary', text: 'Older →', disabled: offset + 100 >= r.total, onclick: () => { offset += 100; load(); } });
    show(el('h1', { text: 'Audit log' }), el('div', { class: 'pager' }, prev, next, el('span', { class: 'muted', text: `${r.total} entries` })),
      el('table', { id: 'audit-table' }, el('thead', {}, el('tr', {}, ['When', 'Who', 'Role', 'Action', 'Target', 'Result', 'Detail'].map(t => el('th', { text: t })))), el('tbody', {}, rows)));
  };
  await load();
}

// ---- routing ---------------------------------------------------------------------------------

async function route() {
  clearTimer();
  if (!S.me) return;
  const h = location.hash || '#/devices';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', h.startsWith('#/' + a.dataset.page));
  try {
    if (h.startsWith('#/device/')) await renderDevice(decodeURIComponent(h.slice(9)));
    else if (h.startsWith('#/rollouts')) await renderRollouts();
    else if (h.startsWith('#/audit')) await renderAudit();
    else await renderDevices();
  } catch (e) {
    if (e.status !== 401) show(el('p', { class: 'error', text: 'Error: ' + e.message }));
  }
}

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  try {
    const me = await api('/api/me');
    S.me = { name: me.name, role: me.role }; S.csrf = me.csrf || null;
    onLoggedIn();
    await route();
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
  }
}

document.addEventListener('DOMContentLoaded', start);
