/* hashwatt web panel — vanilla JavaScript (ES2020), no build step, no external URLs.
 * Charts: uPlot v1.6.32 (MIT licence, see uPlot.LICENSE), vendored as /assets/uplot.iife.min.js.
 * Everything from the server is rendered with textContent / createElement, never innerHTML.
 */
(function () {
  'use strict';

  /* ------------------------------------------------------------------ theme */

  const THEME_KEY = 'hashwatt-theme';
  function savedTheme() {
    try {
      const t = localStorage.getItem(THEME_KEY);
      return t === 'light' || t === 'dark' ? t : 'auto';
    } catch (e) { return 'auto'; }
  }
  function applyTheme(t) {
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
    else document.documentElement.removeAttribute('data-theme');
  }
  applyTheme(savedTheme()); // before first paint: this script runs in <head>

  /* ------------------------------------------------------------------ state */

  const S = {
    csrf: null, user: null, scope: null,
    es: null, esRetry: null, connected: null,
    snapshot: null,
    page: null, pageName: null,
    restarting: false,
  };
  const DAY_MS = 24 * 3600 * 1000;

  /* ------------------------------------------------------------------ DOM helpers */

  const $ = (sel, root) => (root || document).querySelector(sel);
  let uidCounter = 0;
  const uid = (p) => (p || 'hw') + '-' + (++uidCounter);

  function append(n, ...kids) {
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      n.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return n;
  }

  /** el('div', {class, id, text, onclick, dataset, ...attrs}, ...children) */
  function el(tag, props, ...kids) {
    const n = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k === 'class') n.className = v;
        else if (k === 'text') n.textContent = String(v);
        else if (k === 'dataset') Object.assign(n.dataset, v);
        else if (k === 'style') n.style.cssText = v; // CSSOM: allowed under a strict CSP
        else if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
        else if (k === 'value') n.value = v;
        else if (k === 'checked') { n.checked = !!v; n.defaultChecked = !!v; } // survives form.reset()
        else if (k === 'disabled' || k === 'required' || k === 'open' || k === 'hidden' || k === 'readOnly') n[k] = !!v;
        else n.setAttribute(k, v === true ? '' : String(v));
      }
    }
    return append(n, kids);
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...kids) {
    const n = document.createElementNS(SVGNS, tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) if (v != null) n.setAttribute(k, String(v));
    return append(n, kids);
  }

  function setText(node, text) {
    if (!node) return;
    const t = String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  function field(label, input, hint) {
    if (!input.id) input.id = uid('f');
    let hintEl = null;
    if (hint) {
      hintEl = el('span', { class: 'hint', id: input.id + '-hint', text: hint });
      input.setAttribute('aria-describedby', hintEl.id);
    }
    return el('div', { class: 'field' + (input.tagName === 'TEXTAREA' ? ' wide' : '') },
      el('label', { for: input.id, text: label }), input, hintEl);
  }

  function checkbox(id, label, checked) {
    const input = el('input', { type: 'checkbox', id: id || uid('c'), checked });
    return { input, label: el('label', { class: 'check' }, input, label) };
  }

  /** An aria-live message area placed next to a form. */
  function msgBox(id) {
    return el('p', { class: 'msg', id, role: 'status', 'aria-live': 'polite' });
  }
  function setMsg(node, kind, text) {
    if (!node) return;
    node.className = 'msg' + (kind ? ' ' + kind : '');
    node.textContent = text || '';
  }

  function tableWrap(label, table) {
    return el('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
  }

  /** Copies column headings into data-label so that small screens can show rows as cards. */
  function stackLabels(table) {
    const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
    for (const tr of table.querySelectorAll('tbody tr')) {
      [...tr.children].forEach((c, i) => { if (!c.hasAttribute('colspan')) c.dataset.label = heads[i] || ''; });
    }
  }

  /** Text with break opportunities after "://" and before "." and ":" (for URLs). */
  function breakable(text) {
    const parts = String(text).split(/(?<=:\/\/)|(?=\.)|(?=:\d)|(?=@)/);
    const out = [];
    parts.forEach((p, i) => { if (i) out.push(el('wbr')); out.push(p); });
    return out;
  }

  function badge(text, cls) {
    return el('span', { class: 'badge ' + (cls || 'plain'), text });
  }

  /** Runs fn with the button marked busy; ignores repeated presses. Keeps focus on the button. */
  async function busy(btn, fn) {
    if (btn && btn.dataset.busy) return undefined;
    if (btn) { btn.dataset.busy = '1'; btn.setAttribute('aria-disabled', 'true'); btn.setAttribute('aria-busy', 'true'); }
    try { return await fn(); } finally {
      if (btn) { delete btn.dataset.busy; btn.removeAttribute('aria-disabled'); btn.removeAttribute('aria-busy'); }
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function announce(text) {
    const a = $('#announcer');
    if (!a) return;
    a.textContent = '';
    setTimeout(() => { a.textContent = text; }, 30);
  }

  /* ------------------------------------------------------------------ formatting */

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const pad2 = (n) => String(n).padStart(2, '0');
  const DASH = '—';

  function fmtHs(v) {
    if (!isNum(v)) return DASH;
    const p = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
    let i = 0, x = Math.abs(v);
    while (x >= 1000 && i < p.length - 1) { x /= 1000; i++; }
    const s = x.toFixed(x === 0 ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0);
    return (v < 0 ? '-' : '') + s + ' ' + p[i] + 'H/s';
  }
  function fmtSi(v, unit) {
    if (!isNum(v)) return DASH;
    const p = ['', 'k', 'M', 'G', 'T', 'P', 'E', 'Z'];
    let i = 0, x = Math.abs(v);
    while (x >= 1000 && i < p.length - 1) { x /= 1000; i++; }
    return x.toFixed(i === 0 ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0) + ' ' + p[i] + (unit || '');
  }
  function fmtW(v) {
    if (!isNum(v)) return 'unknown';
    if (Math.abs(v) >= 10000) return (v / 1000).toFixed(1) + ' kW';
    return v.toFixed(Math.abs(v) < 100 ? 1 : 0) + ' W';
  }
  function fmtW0(v) { return isNum(v) ? Math.round(v) + ' W' : 'unknown'; }
  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString() : DASH; }
  function fmtEff(v) {
    if (!isNum(v)) return 'unknown';
    return (v >= 1000 ? Math.round(v).toLocaleString() : v.toFixed(1)) + ' J/TH';
  }
  function fmtTemp(v) { return isNum(v) ? v.toFixed(1) + ' °C' : DASH; }
  function fmtDuration(secs) {
    if (!isNum(secs) || secs < 0) return DASH;
    let s = Math.floor(secs);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const parts = [];
    if (d) parts.push(d + 'd');
    if (d || h) parts.push(h + 'h');
    if (d || h || m) parts.push(m + 'm');
    parts.push(s + 's');
    return parts.join(' ');
  }
  /** Hours and minutes, for durations of energy figures. */
  function fmtHm(secs) {
    if (!isNum(secs)) return DASH;
    const m = Math.round(secs / 60);
    const h = Math.floor(m / 60);
    return h ? h + ' h ' + pad2(m % 60) + ' min' : m + ' min';
  }
  function fmtBytes(v) {
    if (!isNum(v)) return DASH;
    const u = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0, x = v;
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (i === 0 ? x : x.toFixed(1)) + ' ' + u[i];
  }
  function fmtClock(ms) {
    if (!isNum(ms)) return DASH;
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }
  function fmtClockS(ms) {
    if (!isNum(ms)) return DASH;
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }
  function sameDay(a, b) {
    const x = new Date(a), y = new Date(b);
    return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
  }
  function fmtDay(ms) {
    return new Date(ms).toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  }
  /** HH:MM today, else "3 Dec HH:MM". */
  function fmtWhen(ms) {
    if (!isNum(ms)) return DASH;
    return sameDay(ms, Date.now()) ? fmtClock(ms) : fmtDay(ms) + ' ' + fmtClock(ms);
  }
  function fmtDate(ms) {
    if (!isNum(ms)) return DASH;
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + fmtClock(ms);
  }
  function fmtMoney(v, currency) {
    if (!isNum(v)) return DASH;
    if (currency) {
      try { return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(v); } catch (e) { /* not ISO 4217 */ }
      return v.toFixed(2) + ' ' + currency;
    }
    return v.toFixed(2);
  }
  function fmtKg(g) { return isNum(g) ? (g / 1000).toFixed(g < 10000 ? 2 : 1) + ' kg' : DASH; }
  function fmtKwh(v) { return isNum(v) ? v.toFixed(v < 10 ? 2 : 1) + ' kWh' : DASH; }

  function modeName(m) { return m && typeof m === 'object' ? m.mode : m; }
  function modeClass(m) {
    const n = modeName(m);
    return n === 'run' || n === 'limit' || n === 'pause' ? 'mode-' + n : 'mode-none';
  }
  function modeWord(m) {
    switch (modeName(m)) {
      case 'run': return 'Running';
      case 'limit': return 'Limited to ' + fmtW0(m.watts);
      case 'pause': return 'Paused';
      default: return 'Unknown';
    }
  }
  function modeShort(m) {
    switch (modeName(m)) {
      case 'run': return 'run';
      case 'limit': return isNum(m.watts) ? 'limit ' + Math.round(m.watts) + ' W' : 'limit';
      case 'pause': return 'pause';
      default: return 'unknown';
    }
  }
  /** "Paused by surplus-only: grid export 0.4 kW < 1.0 kW, since 14:02" */
  function verdictText(v) {
    if (!v) return 'No decision yet';
    let s = modeWord(v.mode);
    s += v.by === 'default' ? ' by default' : v.by ? ' by ' + v.by : '';
    if (v.reason) s += ': ' + v.reason;
    if (isNum(v.since_ms) && v.since_ms > 0) s += ', since ' + fmtWhen(v.since_ms);
    return s;
  }
  function manualText(m) {
    if (!m) return '';
    let s = 'Manual override: ' + modeWord(m.mode).toLowerCase();
    s += isNum(m.until_ms) ? ' until ' + fmtWhen(m.until_ms) : ' until resumed';
    if (m.note) s += ' (' + m.note + ')';
    return s;
  }

  /* ------------------------------------------------------------------ API */

  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  /**
   * fetch wrapper: same-origin credentials, CSRF header on state changes, JSON in and out.
   * opts.raw: send body as is (octet-stream); opts.auth=false: a 401 is returned to the caller
   * instead of sending the user to the login screen.
   */
  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = { Accept: 'application/json' };
    let payload;
    if (body !== undefined) {
      if (opts.raw) { payload = body; headers['Content-Type'] = 'application/octet-stream'; }
      else { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
    }
    if (method !== 'GET' && method !== 'HEAD' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'Cannot reach hashwatt. Check the network connection and try again.');
    }
    const text = await res.text().catch(() => '');
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
    if (res.status === 401 && opts.auth !== false) {
      sessionEnded('Your session has ended. Please log in again.');
      throw new ApiError(401, 'Not logged in.', data);
    }
    if (!res.ok) {
      let message = data && typeof data === 'object' && typeof data.error === 'string' ? data.error : null;
      if (!message) {
        message = res.status === 403 ? 'Not allowed (HTTP 403).'
          : res.status === 404 ? 'Not found (HTTP 404).'
            : 'Request failed (HTTP ' + res.status + ').';
      }
      throw new ApiError(res.status, message, data);
    }
    return data;
  }

  /** Shows an error from api() in a message box (401 is already handled). */
  function showError(box, e) {
    if (e && e.status === 401) return;
    setMsg(box, 'error', (e && e.message) || String(e));
  }

  /* ------------------------------------------------------------------ shell */

  function setShell(loggedIn) {
    $('#nav').hidden = !loggedIn;
    $('#logout').hidden = !loggedIn;
    $('#conn').hidden = !loggedIn;
  }

  function mainEl() { return $('#main'); }

  function destroyPage() {
    if (S.page && S.page.destroy) { try { S.page.destroy(); } catch (e) { console.warn(e); } }
    S.page = null;
    S.pageName = null;
  }

  function setConn(live) {
    if (S.connected === live) return;
    S.connected = live;
    const c = $('#conn');
    c.className = 'conn ' + (live ? 'live' : 'down');
    c.textContent = live ? 'Live' : 'Disconnected';
    c.title = live ? 'Receiving live updates' : 'Live updates interrupted; reconnecting…';
    const m = mainEl();
    if (m) m.classList.toggle('stale', !live);
  }

  function updateThemeButton() {
    const t = savedTheme();
    const b = $('#theme-toggle');
    const word = { auto: 'Auto', light: 'Light', dark: 'Dark' }[t];
    b.replaceChildren(el('span', { 'aria-hidden': 'true', class: 'theme-glyph', text: { auto: '◐', light: '☀', dark: '☾' }[t] }), ' ' + word);
    b.setAttribute('aria-label', 'Colour theme: ' + word);
    b.title = 'Colour theme: ' + word + ' (click to change)';
  }

  function initShell() {
    updateThemeButton();
    $('#theme-toggle').addEventListener('click', () => {
      const order = ['auto', 'light', 'dark'];
      const next = order[(order.indexOf(savedTheme()) + 1) % order.length];
      try { if (next === 'auto') localStorage.removeItem(THEME_KEY); else localStorage.setItem(THEME_KEY, next); } catch (e) { /* private mode */ }
      applyTheme(next);
      updateThemeButton();
      announce('Theme: ' + next);
      if (S.page && S.page.onTheme) S.page.onTheme();
    });
    if (window.matchMedia) {
      const mq = window.matchMedia('(prefers-color-scheme: dark)');
      const onChange = () => { if (savedTheme() === 'auto' && S.page && S.page.onTheme) S.page.onTheme(); };
      if (mq.addEventListener) mq.addEventListener('change', onChange);
    }
    $('#skip-link').addEventListener('click', (e) => {
      e.preventDefault();
      const h = $('#main h1');
      (h || mainEl()).focus();
    });
    $('#logout').addEventListener('click', async () => {
      try { await api('DELETE', '/api/v1/session', undefined, { auth: false }); } catch (e) { /* gone anyway */ }
      sessionEnded('You are logged out.', 'ok');
    });
    window.addEventListener('hashchange', () => { if (S.csrf && !S.restarting) route(true); });
  }

  /* ------------------------------------------------------------------ startup, setup, login */

  async function boot() {
    destroyPage();
    setShell(false);
    const main = mainEl();
    main.replaceChildren(el('p', { class: 'loading', text: 'Connecting to hashwatt…' }));
    let setup;
    try {
      setup = await api('GET', '/api/v1/setup', undefined, { auth: false });
    } catch (e) {
      return renderFatal(e.message);
    }
    if (setup && setup.needed) return renderSetup();
    try {
      const sess = await api('GET', '/api/v1/session', undefined, { auth: false });
      enterApp(sess);
    } catch (e) {
      if (e.status === 401) renderLogin();
      else renderFatal(e.message);
    }
  }

  function renderFatal(message) {
    const main = mainEl();
    const retry = el('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', onclick: boot });
    main.replaceChildren(el('div', { class: 'auth' }, el('section', { class: 'card' },
      el('h1', { tabindex: '-1', text: 'hashwatt is not reachable' }),
      el('p', { class: 'msg error', role: 'alert', text: message }),
      el('div', { class: 'form-actions' }, retry))));
    document.title = 'hashwatt';
  }

  function authScreen(title, intro, form) {
    const main = mainEl();
    main.classList.remove('stale');
    main.replaceChildren(el('div', { class: 'auth' }, el('section', { class: 'card', 'aria-labelledby': 'auth-title' },
      el('h1', { id: 'auth-title', tabindex: '-1', text: title }),
      intro ? el('p', { class: 'muted', text: intro }) : null,
      form)));
  }

  function renderSetup() {
    document.title = 'Set up — hashwatt';
    const token = el('input', { type: 'text', id: 'setup-token', autocomplete: 'off', spellcheck: 'false', required: true, autocapitalize: 'none' });
    const pw = el('input', { type: 'password', id: 'setup-password', autocomplete: 'new-password', required: true, minlength: '10' });
    const pw2 = el('input', { type: 'password', id: 'setup-password2', autocomplete: 'new-password', required: true, minlength: '10' });
    const submit = el('button', { type: 'submit', id: 'setup-submit', class: 'btn btn-primary', text: 'Set password and continue' });
    const msg = msgBox('setup-error');
    const form = el('form', { id: 'setup-form', novalidate: true },
      field('Setup token', token, 'Printed on the appliance console and in its log at first start.'),
      field('Admin password', pw, 'At least 10 characters.'),
      field('Repeat password', pw2),
      submit, msg);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(submit, async () => {
        setMsg(msg, '', '');
        [token, pw, pw2].forEach((i) => i.removeAttribute('aria-invalid'));
        if (!token.value.trim()) { token.setAttribute('aria-invalid', 'true'); token.focus(); return setMsg(msg, 'error', 'Enter the setup token.'); }
        if (pw.value.length < 10) { pw.setAttribute('aria-invalid', 'true'); pw.focus(); return setMsg(msg, 'error', 'The password must have at least 10 characters.'); }
        if (pw.value !== pw2.value) { pw2.setAttribute('aria-invalid', 'true'); pw2.focus(); return setMsg(msg, 'error', 'The two passwords differ.'); }
        try {
          const sess = await api('POST', '/api/v1/setup', { token: token.value.trim(), password: pw.value }, { auth: false });
          enterApp(sess);
        } catch (err) { setMsg(msg, 'error', err.message); }
      });
    });
    authScreen('Welcome to hashwatt', 'Choose the password for the “admin” account. You need the one-time setup token shown on the appliance.', form);
    token.focus();
  }

  function renderLogin(notice, noticeKind) {
    document.title = 'Log in — hashwatt';
    const user = el('input', { type: 'text', id: 'login-user', value: 'admin', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true });
    const pw = el('input', { type: 'password', id: 'login-password', autocomplete: 'current-password', required: true });
    const submit = el('button', { type: 'submit', id: 'login-submit', class: 'btn btn-primary', text: 'Log in' });
    const msg = msgBox('login-error');
    const form = el('form', { id: 'login-form', novalidate: true },
      field('User', user), field('Password', pw), submit, msg);
    if (notice) setMsg(msg, noticeKind || 'info', notice);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(submit, async () => {
        if (!pw.value) { pw.focus(); return setMsg(msg, 'error', 'Enter the password.'); }
        setMsg(msg, 'info', 'Logging in…');
        try {
          const sess = await api('POST', '/api/v1/session', { user: user.value.trim(), password: pw.value }, { auth: false });
          enterApp(sess);
        } catch (err) {
          let text = err.message;
          if (err.status === 401 && !(err.body && err.body.error)) text = 'Wrong user or password.';
          if (err.status === 429 && err.body && isNum(err.body.retry_after_secs)) {
            text += ' Try again in ' + fmtDuration(err.body.retry_after_secs) + '.';
          }
          setMsg(msg, 'error', text);
          pw.select();
          pw.focus();
        }
      });
    });
    authScreen('Log in to hashwatt', null, form);
    pw.focus();
  }

  function enterApp(sess) {
    S.csrf = sess && sess.csrf ? String(sess.csrf) : '';
    S.user = (sess && sess.user) || 'admin';
    S.scope = (sess && sess.scope) || 'admin';
    setShell(true);
    S.connected = null;
    setConn(false);
    $('#conn').textContent = 'Connecting…';
    $('#conn').className = 'conn';
    openEvents();
    route(false);
  }

  /** 401 anywhere: drop the session and show the login screen. */
  function sessionEnded(message, kind) {
    if (!S.csrf && S.csrf !== '') return;
    S.csrf = null;
    closeEvents();
    destroyPage();
    setShell(false);
    renderLogin(message, kind);
  }

  /* ------------------------------------------------------------------ live events */

  function openEvents() {
    closeEvents();
    let es;
    try { es = new EventSource('/api/v1/events'); } catch (e) { setConn(false); return; }
    S.es = es;
    es.addEventListener('open', () => setConn(true));
    es.addEventListener('error', () => {
      setConn(false);
      if (S.restarting) { S.restartDown = true; return; } // the old process has gone
      if (es.readyState === 2 /* CLOSED: the server refused, e.g. 401 */) {
        clearTimeout(S.esRetry);
        S.esRetry = setTimeout(async () => {
          if (S.es !== es || S.csrf == null) return;
          try {
            await api('GET', '/api/v1/session'); // 401 -> login screen
            if (S.es === es) openEvents();
          } catch (e) {
            if (S.es === es && e.status !== 401) { S.es = null; S.esRetry = setTimeout(openEvents, 5000); }
          }
        }, 3000);
      }
    });
    es.addEventListener('status', (ev) => {
      let snap;
      try { snap = JSON.parse(ev.data); } catch (e) { return; }
      if (!snap || typeof snap !== 'object') return;
      setConn(true);
      S.snapshot = snap;
      if (S.page && S.page.onStatus) S.page.onStatus(snap);
    });
    es.addEventListener('log', (ev) => {
      let line;
      try { line = JSON.parse(ev.data); } catch (e) { return; }
      if (S.page && S.page.onLog) S.page.onLog(line);
    });
  }

  function closeEvents() {
    clearTimeout(S.esRetry);
    if (S.es) { S.es.close(); S.es = null; }
  }

  /* ------------------------------------------------------------------ router */

  const PAGES = {
    dashboard: { title: 'Dashboard', render: renderDashboard },
    pools: { title: 'Pools', render: renderPools },
    plugins: { title: 'Plugins', render: renderPlugins },
    energy: { title: 'Energy', render: renderEnergy },
    system: { title: 'System', render: renderSystem },
    account: { title: 'Account', render: renderAccount },
  };

  function route(focus) {
    const m = /^#\/([a-z]+)/.exec(location.hash);
    let name = m && PAGES[m[1]] ? m[1] : null;
    if (!name) {
      name = 'dashboard';
      history.replaceState(null, '', '#/dashboard');
    }
    destroyPage();
    for (const k of Object.keys(PAGES)) {
      const a = $('#nav-' + k);
      if (k === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const main = mainEl();
    main.replaceChildren();
    main.classList.toggle('stale', S.connected === false);
    document.title = PAGES[name].title + ' — hashwatt';
    S.pageName = name;
    S.page = PAGES[name].render(main) || {};
    if (focus) {
      const h = $('h1', main);
      if (h) h.focus();
    }
    const link = $('#nav-' + name);
    if (link && link.scrollIntoView && window.innerWidth < 760) link.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }

  function pageHead(title, ...extra) {
    return el('div', { class: 'page-head' }, el('h1', { tabindex: '-1', text: title }), extra);
  }

  /* ------------------------------------------------------------------ chart colours */

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  const SERIES_COLOURS_LIGHT = ['#0a64c2', '#e8590c', '#2b8a3e', '#ae3ec9', '#0c8599', '#c92a2a', '#5f3dc4', '#a87b00'];
  const SERIES_COLOURS_DARK = ['#4c9dff', '#ff922b', '#51cf66', '#da77f2', '#3bc9db', '#ff6b6b', '#9775fa', '#fcc419'];
  function isDark() {
    const t = savedTheme();
    if (t === 'dark') return true;
    if (t === 'light') return false;
    return !!(window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches);
  }
  function seriesColour(i) {
    const p = isDark() ? SERIES_COLOURS_DARK : SERIES_COLOURS_LIGHT;
    return p[i % p.length];
  }

  /* ================================================================== DASHBOARD */

  function renderDashboard(main) {
    const page = { timers: [], destroyed: false };
    const ref = {};

    // 1. The mining decision, large and first.
    ref.decisionCard = el('section', { class: 'card decision', 'aria-labelledby': 'decision-label' });
    ref.decision = el('p', { id: 'decision', 'aria-live': 'polite', 'aria-atomic': 'true', text: 'Loading…' });
    ref.override = el('div', { class: 'decision-override', hidden: true });
    append(ref.decisionCard, el('h2', { class: 'decision-label', id: 'decision-label', text: 'Mining decision' }), ref.decision, ref.override);

    // 2. Timeline of decisions, last 24 h.
    ref.timeline = el('div', { class: 'timeline', id: 'decision-timeline', role: 'img', 'aria-label': 'Decisions over the last 24 hours; the list below has the details' });
    ref.axis = el('div', { class: 'timeline-axis', 'aria-hidden': 'true' });
    ref.tlSummary = el('p', { class: 'small muted', id: 'decision-summary' });
    ref.changesBody = el('tbody');
    ref.changesCount = el('span');
    const changesTable = el('table', { id: 'decision-changes' },
      el('caption', { class: 'sr-only', text: 'Decision changes in the last 24 hours, newest first' }),
      el('thead', null, el('tr', null, el('th', { scope: 'col', text: 'Time' }), el('th', { scope: 'col', text: 'Mode' }),
        el('th', { scope: 'col', text: 'By' }), el('th', { scope: 'col', text: 'Reason' }))),
      ref.changesBody);
    const timelineCard = el('section', { class: 'card', 'aria-labelledby': 'timeline-title' },
      el('div', { class: 'card-head' }, el('h2', { id: 'timeline-title', text: 'Last 24 hours' }), ref.tlSummary),
      ref.timeline, ref.axis,
      el('div', { class: 'legend', 'aria-hidden': 'true' },
        el('span', null, el('i', { class: 'mode-run' }), 'running'),
        el('span', null, el('i', { class: 'mode-limit' }), 'limited'),
        el('span', null, el('i', { class: 'mode-pause' }), 'paused')),
      el('details', { class: 'changes-wrap', open: true },
        el('summary', null, 'Changes (', ref.changesCount, ')'),
        el('div', { class: 'changes table-wrap', role: 'region', 'aria-label': 'Decision changes', tabindex: '0' }, changesTable)));

    // 3. Tiles.
    function tile(label, id, opts) {
      opts = opts || {};
      const value = el('div', { class: 'tile-value' + (opts.text ? ' text' : ''), id, text: DASH });
      const sub = el('div', { class: 'tile-sub' });
      const t = el('div', { class: 'tile' + (opts.wide ? ' span-2' : '') }, el('div', { class: 'tile-label', text: label }), value, sub);
      return { t, value, sub };
    }
    ref.hash = tile('Hashrate', 'hashrate-total');
    ref.power = tile('Power', 'power');
    ref.eff = tile('Efficiency', 'efficiency');
    ref.acc = tile('Accepted', 'shares-accepted');
    ref.rej = tile('Rejected', 'shares-rejected');
    ref.stale = tile('Stale', 'shares-stale');
    ref.pool = tile('Active pool', 'active-pool', { text: true, wide: true });
    ref.up = tile('Uptime', 'uptime', { wide: true });
    const tiles = el('section', { class: 'tiles', 'aria-label': 'Current figures' },
      ref.hash.t, ref.power.t, ref.eff.t, ref.acc.t, ref.rej.t, ref.stale.t, ref.pool.t, ref.up.t);

    // 4. Hashrate chart.
    ref.chart = el('div', { class: 'chart', id: 'hashrate-chart', 'aria-describedby': 'chart-summary' });
    ref.chartSummary = el('p', { class: 'sr-only', id: 'chart-summary' });
    const chartCard = el('section', { class: 'card', 'aria-labelledby': 'chart-title' },
      el('div', { class: 'card-head' }, el('h2', { id: 'chart-title', text: 'Hashrate, last hour' }),
        el('span', { class: 'small muted', text: 'total and per device, 10 s average' })),
      ref.chart, ref.chartSummary);

    // 5. Devices.
    ref.devBody = el('tbody');
    const devTable = el('table', { id: 'devices-table', class: 'stack' },
      el('thead', null, el('tr', null,
        ['Device', 'Kind', 'Model', 'Hashrate', 'Temperatures', 'Fans', 'Power', 'Paused'].map((h, i) =>
          el('th', { scope: 'col', class: i === 3 || i === 6 ? 'num' : null, text: h })))),
      ref.devBody);
    const devCard = el('section', { class: 'card', 'aria-labelledby': 'dev-title' },
      el('h2', { id: 'dev-title', text: 'Devices, temperatures and fans' }), tableWrap('Devices', devTable));

    append(main, el('h1', { class: 'sr-only', tabindex: '-1', text: 'Dashboard' }), ref.decisionCard, timelineCard, tiles, chartCard, devCard);

    /* ---- decisions timeline ---- */
    let decisions = [];
    function renderTimeline() {
      const now = Date.now();
      const start = now - DAY_MS;
      const frag = [];
      const totals = { run: 0, limit: 0, pause: 0 };
      // The decision in force at the window start, if known.
      let inForce = null;
      for (const d of decisions) if (d.at_ms < start) inForce = d;
      const list = inForce ? [{ ...inForce, at_ms: start }] : [];
      for (const d of decisions) if (d.at_ms >= start) list.push(d);
      if (!list.length || list[0].at_ms > start) {
        const gapEnd = list.length ? list[0].at_ms : now;
        frag.push(el('div', { class: 'seg mode-none', style: 'width:' + ((gapEnd - start) / DAY_MS * 100).toFixed(3) + '%', title: 'no data' }));
      }
      list.forEach((d, i) => {
        const a = Math.max(d.at_ms, start);
        const b = Math.min(i + 1 < list.length ? list[i + 1].at_ms : now, now);
        if (b <= a) return;
        const mn = modeName(d.mode);
        if (totals[mn] != null) totals[mn] += b - a;
        frag.push(el('div', {
          class: 'seg ' + modeClass(d.mode),
          style: 'width:' + ((b - a) / DAY_MS * 100).toFixed(3) + '%',
          title: modeWord(d.mode) + ' ' + fmtClock(a) + '–' + fmtClock(b) + (d.by ? ' by ' + d.by : '') + (d.reason ? ': ' + d.reason : ''),
        }));
      });
      ref.timeline.replaceChildren(...frag);
      const ticks = [];
      for (let i = 0; i <= 4; i++) ticks.push(el('span', { text: i === 4 ? 'now' : fmtClock(start + i * 6 * 3600 * 1000) }));
      ref.axis.replaceChildren(...ticks);
      const parts = [];
      if (totals.run) parts.push('running ' + fmtHm(totals.run / 1000));
      if (totals.limit) parts.push('limited ' + fmtHm(totals.limit / 1000));
      if (totals.pause) parts.push('paused ' + fmtHm(totals.pause / 1000));
      setText(ref.tlSummary, parts.length ? parts.join(' · ') : 'no decisions recorded');
      ref.timeline.setAttribute('aria-label', 'Decisions over the last 24 hours: ' + (parts.join(', ') || 'no data') + '. The list below has the details.');
      // The list: newest first, only the last 24 h.
      const rows = decisions.filter((d) => d.at_ms >= start || d === inForce).slice().reverse().map((d) =>
        el('tr', null,
          el('td', { class: 'nowrap', text: fmtWhen(d.at_ms) }),
          el('td', null, badge(modeShort(d.mode), modeClass(d.mode))),
          el('td', { class: 'by', text: d.by || DASH }),
          el('td', { class: 'break reason', text: d.reason || DASH })));
      if (!rows.length) rows.push(el('tr', null, el('td', { colspan: '4', class: 'empty', text: 'No changes in the last 24 hours.' })));
      ref.changesBody.replaceChildren(...rows);
      setText(ref.changesCount, String(decisions.filter((d) => d.at_ms >= start).length));
    }
    function noteVerdict(v) {
      if (!v || !v.mode) return false;
      const last = decisions[decisions.length - 1];
      const same = last && modeName(last.mode) === modeName(v.mode) && (last.mode.watts ?? null) === (v.mode.watts ?? null) && last.by === v.by;
      if (same) return false;
      if (last && isNum(v.since_ms) && v.since_ms < last.at_ms) return false;
      decisions.push({ at_ms: isNum(v.since_ms) && v.since_ms > 0 ? v.since_ms : Date.now(), mode: v.mode, watts: v.mode.watts ?? null, by: v.by, reason: v.reason });
      return true;
    }

    /* ---- chart ---- */
    let xs = [], total = [], devNames = [], devSeries = [];
    let plot = null, ro = null;
    function chartHeight() { return window.innerWidth < 760 ? 220 : 280; }
    function buildChart() {
      if (plot) { plot.destroy(); plot = null; }
      ref.chart.replaceChildren();
      if (typeof window.uPlot !== 'function') {
        ref.chart.append(el('p', { class: 'chart-empty', text: 'Chart unavailable.' }));
        return;
      }
      const axisText = cssVar('--muted') || '#666';
      const grid = cssVar('--border') || '#ddd';
      const axis = {
        stroke: axisText,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid, width: 1 },
        font: '12px system-ui, sans-serif',
      };
      const series = [
        { label: 'Time', value: (u, v) => (v == null ? DASH : fmtClockS(v * 1000)) },
        { label: 'Total', stroke: seriesColour(0), width: 2, fill: seriesColour(0) + '22', value: (u, v) => fmtHs(v), points: { show: false } },
      ];
      devNames.forEach((n, i) => series.push({ label: n, stroke: seriesColour(i + 1), width: 1.5, value: (u, v) => fmtHs(v), points: { show: false } }));
      const opts = {
        width: Math.max(200, ref.chart.clientWidth || 600),
        height: chartHeight(),
        series,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, isNum(max) && max > 0 ? max * 1.12 : 1] } },
        axes: [
          { ...axis, values: (u, vals) => vals.map((v) => fmtClock(v * 1000)) },
          { ...axis, size: 78, values: (u, vals) => vals.map((v) => fmtHs(v)) },
        ],
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
      };
      plot = new window.uPlot(opts, [xs, total, ...devSeries], ref.chart);
      updateChartSummary();
    }
    function updateChartSummary() {
      const vals = total.filter(isNum);
      if (!vals.length) { setText(ref.chartSummary, 'No hashrate data in the last hour yet.'); return; }
      const avg = vals.reduce((a, b) => a + b, 0) / vals.length;
      setText(ref.chartSummary, 'Hashrate over the last hour: average ' + fmtHs(avg) + ', latest ' + fmtHs(vals[vals.length - 1]) + '.');
    }
    function loadHistory(h) {
      const hr = (h && h.hashrate) || {};
      const t = Array.isArray(hr.t_ms) ? hr.t_ms : [];
      xs = t.map((v) => v / 1000);
      total = t.map((_, i) => (Array.isArray(hr.total_hs) && isNum(hr.total_hs[i]) ? hr.total_hs[i] : null));
      devNames = [];
      devSeries = [];
      for (const d of Array.isArray(hr.devices) ? hr.devices : []) {
        devNames.push(String(d.name));
        devSeries.push(t.map((_, i) => (Array.isArray(d.hs) && isNum(d.hs[i]) ? d.hs[i] : null)));
      }
      const keep = Math.max(0, xs.length - 360);
      if (keep) { xs = xs.slice(keep); total = total.slice(keep); devSeries = devSeries.map((s) => s.slice(keep)); }
      decisions = (Array.isArray(h && h.decisions) ? h.decisions : []).filter((d) => d && isNum(d.at_ms))
        .map((d) => ({ ...d, mode: typeof d.mode === 'object' && d.mode ? d.mode : { mode: d.mode, watts: d.watts } }));
    }
    function appendPoint(snap) {
      const now = Date.now();
      const last = xs.length ? xs[xs.length - 1] * 1000 : 0;
      if (now - last < 9500) return;
      let rebuild = false;
      const devs = Array.isArray(snap.devices) ? snap.devices : [];
      for (const d of devs) {
        const name = String((d.info && d.info.name) || '?');
        if (!devNames.includes(name)) { devNames.push(name); devSeries.push(xs.map(() => null)); rebuild = true; }
      }
      xs.push(now / 1000);
      total.push(isNum(snap.hashrate_10s_hs) ? snap.hashrate_10s_hs : null);
      devNames.forEach((name, i) => {
        const d = devs.find((x) => x.info && String(x.info.name) === name);
        devSeries[i].push(d && isNum(d.hashrate_10s_hs) ? d.hashrate_10s_hs : null);
      });
      while (xs.length > 360) { xs.shift(); total.shift(); devSeries.forEach((s) => s.shift()); }
      if (rebuild || !plot) buildChart(); else plot.setData([xs, total, ...devSeries]);
      updateChartSummary();
    }

    /* ---- tiles, decision, devices ---- */
    function update(snap) {
      const en = snap.energy || {};
      const v = en.verdict;
      const mc = v ? modeClass(v.mode) : 'mode-none';
      ref.decisionCard.className = 'card decision ' + mc;
      setText(ref.decision, v ? verdictText(v) : (snap.decision || 'No decision yet'));
      if (en.manual) {
        ref.override.hidden = false;
        if (!ref.overrideText) {
          ref.overrideText = el('span', { class: 'badge mode-' + (modeName(en.manual.mode) || 'none') });
          ref.resumeBtn = el('button', { type: 'button', class: 'btn btn-small', text: 'Resume now' });
          ref.overrideMsg = msgBox();
          ref.resumeBtn.addEventListener('click', () => busy(ref.resumeBtn, async () => {
            try {
              const r = await api('POST', '/api/v1/mining/resume');
              setMsg(ref.overrideMsg, 'ok', (r && r.decision) || 'Resumed.');
            } catch (e) { showError(ref.overrideMsg, e); }
          }));
          append(ref.override, ref.overrideText, ref.resumeBtn, el('a', { href: '#/energy', class: 'small', text: 'Energy settings' }), ref.overrideMsg);
        }
        ref.overrideText.className = 'badge ' + modeClass(en.manual.mode);
        setText(ref.overrideText, manualText(en.manual));
      } else {
        ref.override.hidden = true;
      }
      if (v && noteVerdict(v)) renderTimeline();

      setText(ref.hash.value, fmtHs(snap.hashrate_10s_hs));
      setText(ref.hash.sub, '1 min: ' + fmtHs(snap.hashrate_1m_hs));
      setText(ref.power.value, fmtW(snap.power_w));
      const src = { model: 'estimated from a power model', rapl: 'measured by the CPU (RAPL)', external: 'external meter' }[snap.power_source];
      setText(ref.power.sub, isNum(snap.power_w) ? (src || snap.power_source || '') : 'no reading');
      setText(ref.eff.value, fmtEff(snap.efficiency_j_th));
      setText(ref.eff.sub, 'joules per terahash');

      const sh = snap.shares || {};
      setText(ref.acc.value, fmtInt(sh.accepted));
      setText(ref.acc.sub, 'blocks ' + fmtInt(sh.blocks ?? 0) + ' · in flight ' + fmtInt(sh.in_flight ?? 0));
      const rej = sh.rejected && typeof sh.rejected === 'object' ? sh.rejected : {};
      const rejTotal = Object.values(rej).reduce((a, b) => a + (isNum(b) ? b : 0), 0);
      setText(ref.rej.value, fmtInt(rejTotal));
      ref.rej.value.classList.toggle('val-bad', rejTotal > 0);
      const reasons = Object.entries(rej).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
      setText(ref.rej.sub, reasons.length ? reasons.map(([r, n]) => r + ': ' + fmtInt(n)).join(' · ') : 'none');
      setText(ref.stale.value, fmtInt(sh.stale));
      setText(ref.stale.sub, 'hardware errors ' + fmtInt(sh.hardware_errors ?? 0));

      const pools = Array.isArray(sh.pools) ? sh.pools : [];
      let ap = null;
      if (sh.active_pool_id != null) ap = pools.find((p) => p.id === sh.active_pool_id) || null;
      if (!ap && isNum(sh.active_pool)) ap = pools[sh.active_pool] || null;
      const apText = ap ? ap.url : 'none';
      if (ref.pool.value.textContent !== apText) ref.pool.value.replaceChildren(...breakable(apText));
      setText(ref.pool.sub, ap ? (ap.state || '') + (ap.user ? ' · ' + ap.user : '') : (pools.length ? 'no pool connected' : 'no pool configured'));
      setText(ref.up.value, fmtDuration(snap.uptime_secs));
      setText(ref.up.sub, snap.version ? 'hashwatt ' + snap.version : '');

      renderDevices(Array.isArray(snap.devices) ? snap.devices : []);
    }

    /** Per chip (or thread): hashrate, hardware errors and temperature. */
    function unitDetails(d) {
      const tel = d.telemetry || {};
      const units = Array.isArray(tel.units) ? tel.units : [];
      if (units.length < 2 && (d.info || {}).kind !== 'asic') return null;
      const rates = Array.isArray(d.unit_hashrates_10s_hs) ? d.unit_hashrates_10s_hs : [];
      const temps = Array.isArray(tel.temperatures) ? tel.temperatures : [];
      return el('details', { class: 'units' },
        el('summary', { text: units.length + ((d.info || {}).kind === 'asic' ? ' chips' : ' units') }),
        el('ul', { class: 'list-plain small' }, units.map((u, i) => {
          const t = temps.find((x) => x.label === u.name);
          return el('li', { class: 'nowrap', dataset: { unit: u.name } },
            u.name + ': ' + fmtHs(rates[i]) + ' · ' + fmtInt(u.hardware_errors) + ' errors' + (t ? ' · ' + fmtTemp(t.temp_c) : ''));
        })));
    }

    function renderDevices(devs) {
      if (!devs.length) {
        ref.devBody.replaceChildren(el('tr', null, el('td', { colspan: '8', class: 'empty', text: 'No devices.' })));
        return;
      }
      ref.devBody.replaceChildren(...devs.map((d) => {
        const info = d.info || {};
        const tel = d.telemetry || {};
        const temps = Array.isArray(tel.temperatures) ? tel.temperatures : [];
        const fans = Array.isArray(tel.fans) ? tel.fans : [];
        const units = Array.isArray(tel.units) ? tel.units.length : null;
        return el('tr', { dataset: { device: String(info.name || '') } },
          el('th', { scope: 'row' }, String(info.name || '?'), units ? el('span', { class: 'sub', text: units + (units === 1 ? ' unit' : ' units') }) : null),
          el('td', { text: info.kind || DASH }),
          el('td', { class: 'break' }, info.model || DASH,
            tel.problem ? el('span', { class: 'sub val-bad device-problem', text: tel.problem }) : null,
            unitDetails(d)),
          el('td', { class: 'num', text: fmtHs(d.hashrate_10s_hs) }),
          el('td', null, temps.length ? el('ul', { class: 'list-plain' }, temps.map((t) => el('li', { class: 'nowrap', text: (t.label || 'temp') + ' ' + fmtTemp(t.temp_c) }))) : DASH),
          el('td', null, fans.length ? el('ul', { class: 'list-plain' }, fans.map((f) => el('li', {
            class: 'nowrap',
            text: (f.label || 'fan') + ' ' + (isNum(f.rpm) ? fmtInt(f.rpm) + ' rpm' : DASH) + ' · ' + (isNum(f.percent) ? Math.round(f.percent) + ' %' : DASH),
          }))) : DASH),
          el('td', { class: 'num' }, fmtW(tel.power_w), isNum(tel.power_limit_w) ? el('span', { class: 'sub', text: 'limit ' + fmtW0(tel.power_limit_w) }) : null),
          el('td', null, tel.paused ? badge('paused', 'mode-pause') : badge('no', 'mode-run')));
      }));
      stackLabels(devTable);
    }

    /* ---- lifecycle ---- */
    page.onStatus = (snap) => { update(snap); appendPoint(snap); };
    page.onTheme = () => buildChart();
    page.destroy = () => {
      page.destroyed = true;
      page.timers.forEach(clearInterval);
      if (ro) ro.disconnect();
      if (plot) plot.destroy();
    };
    page.timers.push(setInterval(renderTimeline, 60 * 1000));

    if (window.ResizeObserver) {
      let w = 0;
      ro = new ResizeObserver(() => {
        const nw = ref.chart.clientWidth;
        if (plot && nw && nw !== w) { w = nw; plot.setSize({ width: nw, height: chartHeight() }); }
      });
      ro.observe(ref.chart);
    }

    if (S.snapshot) update(S.snapshot);
    renderTimeline();
    buildChart();
    Promise.all([
      api('GET', '/api/v1/history').catch((e) => { if (e.status !== 401) setText(ref.tlSummary, 'History unavailable: ' + e.message); return null; }),
      api('GET', '/api/v1/status').catch(() => null),
    ]).then(([h, snap]) => {
      if (page.destroyed) return;
      if (h) loadHistory(h);
      if (snap) { S.snapshot = S.snapshot || snap; update(snap); }
      else if (S.snapshot) update(S.snapshot);
      if (S.snapshot && S.snapshot.energy) noteVerdict(S.snapshot.energy.verdict);
      renderTimeline();
      buildChart();
    });
    return page;
  }

  /* ================================================================== POOLS */

  const POOL_STATE_CLASS = { healthy: 'ok', connecting: 'warn', disabled: 'plain', off: 'plain' };

  function renderPools(main) {
    const page = { destroyed: false };
    let pools = [];
    let editing = null; // pool id with the inline form open
    const body = el('tbody');
    const listMsg = msgBox('pools-msg');
    const table = el('table', { id: 'pools-table', class: 'stack' },
      el('caption', { class: 'sr-only', text: 'Pools in priority order' }),
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', class: 'num', text: '#' }),
        el('th', { scope: 'col', text: 'Pool' }),
        el('th', { scope: 'col', text: 'State' }),
        el('th', { scope: 'col', class: 'num', text: 'Accepted' }),
        el('th', { scope: 'col', class: 'num', text: 'Rejected' }),
        el('th', { scope: 'col', class: 'num', text: 'Stale' }),
        el('th', { scope: 'col', class: 'num', text: 'Connects' }),
        el('th', { scope: 'col', text: 'Last disconnect' }),
        el('th', { scope: 'col', text: 'Plugin' }),
        el('th', { scope: 'col', text: 'Actions' }))),
      body);

    append(main,
      pageHead('Pools'),
      el('section', { class: 'card', 'aria-labelledby': 'pools-title' },
        el('div', { class: 'card-head' }, el('h2', { id: 'pools-title', text: 'Pools in priority order' }),
          el('span', { class: 'small muted', text: 'The first healthy enabled pool gets the work; the others are fallbacks.' })),
        tableWrap('Pools', table), listMsg),
      el('section', { class: 'card', 'aria-labelledby': 'pool-add-title' },
        el('h2', { id: 'pool-add-title', text: 'Add a pool' }),
        poolForm(null)));

    /** The add form (pool = null, fixed ids) or an inline edit form. */
    function poolForm(pool) {
      const add = !pool;
      const ids = add
        ? { form: 'pool-form', url: 'pool-url', user: 'pool-user', password: 'pool-password', plugin: 'pool-plugin', enabled: 'pool-enabled', settings: 'pool-settings', submit: 'pool-add', test: 'pool-test', result: 'pool-test-result', msg: 'pool-form-msg' }
        : { form: 'pool-edit-' + pool.id, url: uid('eu'), user: uid('eus'), password: uid('ep'), plugin: uid('epl'), enabled: uid('ee'), settings: uid('es'), submit: uid('esb'), test: uid('et'), result: uid('er'), msg: uid('em') };
      const url = el('input', { type: 'text', id: ids.url, inputmode: 'url', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'stratum+tcp://pool.example.com:3333', value: pool ? pool.url : '' });
      const user = el('input', { type: 'text', id: ids.user, autocomplete: 'off', spellcheck: 'false', placeholder: 'wallet-or-account.worker', value: pool ? pool.user : '' });
      const password = el('input', { type: 'password', id: ids.password, autocomplete: 'new-password', placeholder: pool ? (pool.has_password ? 'unchanged' : 'none') : 'x' });
      const plugin = el('input', { type: 'text', id: ids.plugin, autocomplete: 'off', spellcheck: 'false', list: 'pool-plugins-list', placeholder: 'none', value: pool && pool.plugin ? pool.plugin : '' });
      const enabled = checkbox(ids.enabled, 'Enabled', pool ? pool.enabled !== false : true);
      const settingsText = pool && pool.settings && Object.keys(pool.settings).length ? JSON.stringify(pool.settings, null, 2) : '';
      const settings = el('textarea', { id: ids.settings, spellcheck: 'false', rows: '4', placeholder: '{}' });
      settings.value = settingsText;
      const submit = el('button', { type: 'submit', id: ids.submit, class: 'btn btn-primary', text: add ? 'Add pool' : 'Save' });
      const test = el('button', { type: 'button', id: ids.test, class: 'btn', text: 'Test connection' });
      const result = el('div', { id: ids.result, class: 'test-result', 'aria-live': 'polite' });
      const msg = msgBox(ids.msg);
      const cancel = add ? null : el('button', { type: 'button', class: 'btn btn-ghost', text: 'Cancel' });
      const form = el('form', { id: ids.form, novalidate: true, 'aria-label': add ? 'Add a pool' : 'Edit pool ' + pool.url },
        el('div', { class: 'form-grid' },
          field('URL', url, 'stratum+tcp://host:port or stratum+ssl://host:port'),
          field('User', user, 'Usually your wallet or account name and a worker name.'),
          field('Password', password, pool ? 'Leave empty to keep the current one.' : 'Optional; many pools accept any value.'),
          field('Plugin (optional)', plugin, 'Name of a pool plugin, e.g. for a custom protocol.')),
        el('div', { class: 'form-row' }, enabled.label),
        el('details', { class: 'more', open: !!settingsText || null },
          el('summary', { text: 'Plugin settings (JSON)' }),
          el('div', { class: 'form-grid' }, field('Settings', settings, 'A JSON object passed to the pool plugin. Leave empty for none.'))),
        el('div', { class: 'form-actions' }, submit, test, cancel),
        msg, result);

      function values(forTest) {
        const body = { url: url.value.trim(), user: user.value.trim() };
        if (password.value) body.password = password.value;
        const pl = plugin.value.trim();
        if (pl) body.plugin = pl; else if (!add && !forTest) body.plugin = null;
        if (!forTest) {
          body.enabled = enabled.input.checked;
          const st = settings.value.trim();
          if (st) {
            let parsed;
            try { parsed = JSON.parse(st); } catch (e) { throw new Error('The plugin settings are not valid JSON: ' + e.message); }
            if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('The plugin settings must be a JSON object.');
            body.settings = parsed;
          } else if (!add) body.settings = {};
        }
        return body;
      }
      function check() {
        url.removeAttribute('aria-invalid');
        if (!url.value.trim()) { url.setAttribute('aria-invalid', 'true'); url.focus(); throw new Error('Enter the pool URL.'); }
      }

      form.addEventListener('submit', (e) => {
        e.preventDefault();
        busy(submit, async () => {
          setMsg(msg, '', '');
          let body;
          try { check(); body = values(false); } catch (err) { return setMsg(msg, 'error', err.message); }
          try {
            if (add) {
              await api('POST', '/api/v1/pools', body);
              form.reset();
              settings.value = '';
              result.replaceChildren();
              setMsg(msg, 'ok', 'Pool added.');
              await load();
            } else {
              await api('PUT', '/api/v1/pools/' + encodeURIComponent(pool.id), body);
              editing = null;
              setMsg(listMsg, 'ok', 'Pool saved.');
              await load();
              focusRow(pool.id, 'edit');
            }
          } catch (err) { showError(msg, err); }
        });
      });
      test.addEventListener('click', () => busy(test, async () => {
        setMsg(msg, '', '');
        try { check(); } catch (err) { return setMsg(msg, 'error', err.message); }
        result.replaceChildren(el('p', { class: 'msg info', text: 'Testing the connection…' }));
        try {
          const r = await api('POST', '/api/v1/pools/test', values(true));
          renderTestResult(result, r);
        } catch (err) {
          result.replaceChildren();
          showError(msg, err);
        }
      }));
      if (cancel) cancel.addEventListener('click', () => { editing = null; renderRows(); focusRow(pool.id, 'edit'); });
      return form;
    }

    function renderTestResult(box, r) {
      const steps = Array.isArray(r && r.steps) ? r.steps : [];
      box.replaceChildren(
        el('p', { class: 'msg ' + (r && r.ok ? 'ok' : 'error'), text: r && r.ok ? 'Connection works.' : 'Connection failed.' }),
        el('ul', { class: 'steps' }, steps.map((s) => el('li', null,
          el('span', { class: 'mark ' + (s.ok ? 'ok' : 'bad'), 'aria-hidden': 'true', text: s.ok ? '✓' : '✗' }),
          el('span', { class: 'sr-only', text: s.ok ? 'passed: ' : 'failed: ' }),
          el('span', { class: 'step-name', text: s.step }),
          el('span', { class: 'step-detail', text: s.detail || '' }),
          el('span', { class: 'step-ms', text: isNum(s.ms) ? s.ms + ' ms' : '' })))),
        r && r.session ? el('p', { class: 'sub session', title: sessionDetails(r.session), text: sessionLine(r.session) }) : '');
    }

    // One line for what a connection negotiated (reported by its plugin):
    // "Stratum V2 · extended channel · encrypted · authority 89:c8:…".
    function sessionLine(s) {
      if (!s || typeof s.protocol !== 'string') return '';
      const parts = [s.protocol];
      if (s.channel) parts.push(s.channel + ' channel');
      parts.push(s.encrypted ? 'encrypted' : 'unencrypted');
      if (s.authority) parts.push('authority ' + s.authority);
      return parts.join(' · ');
    }
    function sessionDetails(s) {
      const d = s && Array.isArray(s.details) ? s.details : [];
      return d.filter((p) => Array.isArray(p) && p.length === 2).map((p) => p[0] + ': ' + p[1]).join('; ');
    }

    function statCells(st) {
      st = st || {};
      const state = st.state || 'unknown';
      return {
        session: st.session ? el('span', { class: 'session', title: sessionDetails(st.session), text: sessionLine(st.session) }) : '',
        state: [badge(state, POOL_STATE_CLASS[state] || 'plain'), st.disabled ? el('span', { class: 'sub', text: st.disabled }) : null],
        accepted: fmtInt(st.accepted),
        rejected: fmtInt(st.rejected),
        stale: fmtInt(st.stale),
        connects: fmtInt(st.connects),
        last_disconnect: st.last_disconnect || DASH,
        plugin_error: st.plugin_error ? el('span', { class: 'val-bad', text: 'error: ' + st.plugin_error }) : '',
        restarts: st.plugin_restarts ? st.plugin_restarts + ' restart' + (st.plugin_restarts === 1 ? '' : 's') : null,
      };
    }
    function fillStats(tr, st) {
      const c = statCells(st);
      for (const k of ['session', 'state', 'accepted', 'rejected', 'stale', 'connects', 'last_disconnect', 'plugin_error']) {
        const td = tr.querySelector('[data-f="' + k + '"]');
        if (!td) continue;
        const v = c[k];
        if (typeof v === 'string') setText(td, v);
        else td.replaceChildren(...[v].flat().filter(Boolean));
      }
      const r = tr.querySelector('[data-f="restarts"]');
      if (r) setText(r, c.restarts || '');
    }

    function renderRows() {
      if (!pools.length) {
        body.replaceChildren(el('tr', null, el('td', { colspan: '10', class: 'empty', text: 'No pools yet. Add one below.' })));
        return;
      }
      const rows = [];
      pools.forEach((p, i) => {
        const label = p.url;
        const act = (name, text, aria, onclick, cls, disabled) => el('button', {
          type: 'button', class: 'btn btn-small ' + (cls || ''), dataset: { action: name }, text, 'aria-label': aria, title: aria, disabled, onclick,
        });
        const tr = el('tr', { dataset: { poolId: String(p.id) }, class: p.enabled === false ? 'muted' : null },
          el('td', { class: 'num', text: String(i + 1) }),
          el('td', { class: 'break pool-cell' }, el('span', { class: 'pool-url' }, breakable(p.url)), el('span', { class: 'sub', text: p.user || DASH }),
            el('span', { class: 'sub', 'data-f': 'session' })),
          el('td', { 'data-f': 'state' }),
          el('td', { class: 'num', 'data-f': 'accepted' }),
          el('td', { class: 'num', 'data-f': 'rejected' }),
          el('td', { class: 'num', 'data-f': 'stale' }),
          el('td', { class: 'num', 'data-f': 'connects' }),
          el('td', { class: 'break clip', 'data-f': 'last_disconnect' }),
          el('td', { class: 'break' }, p.plugin ? el('span', { class: 'mono', text: p.plugin }) : DASH,
            el('span', { class: 'sub', 'data-f': 'restarts' }), el('span', { class: 'sub', 'data-f': 'plugin_error' })),
          el('td', { class: 'actions' }, el('div', { class: 'actions-wrap' },
            act('edit', editing === p.id ? 'Close' : 'Edit', (editing === p.id ? 'Close editor for ' : 'Edit ') + label, () => {
              editing = editing === p.id ? null : p.id;
              renderRows();
              if (editing != null) { const f = $('#pool-edit-' + p.id + ' input'); if (f) f.focus(); } else focusRow(p.id, 'edit');
            }),
            act('up', '↑', 'Move ' + label + ' up', () => move(p, i - 1, 'up'), 'btn-icon', i === 0),
            act('down', '↓', 'Move ' + label + ' down', () => move(p, i + 1, 'down'), 'btn-icon', i === pools.length - 1),
            act('toggle', p.enabled === false ? 'Enable' : 'Disable', (p.enabled === false ? 'Enable ' : 'Disable ') + label, (e) => toggle(p, e.currentTarget)),
            act('delete', 'Delete', 'Delete ' + label, (e) => remove(p, e.currentTarget), 'btn-danger'))));
        fillStats(tr, p.status);
        rows.push(tr);
        if (editing === p.id) {
          rows.push(el('tr', { class: 'edit-row', dataset: { editFor: String(p.id) } }, el('td', { colspan: '10' }, poolForm(p))));
        }
      });
      body.replaceChildren(...rows);
      stackLabels(table);
    }

    function focusRow(id, action) {
      const b = table.querySelector('tr[data-pool-id="' + CSS.escape(String(id)) + '"] [data-action="' + action + '"]');
      if (b && !b.disabled) b.focus();
      else { const any = table.querySelector('tr[data-pool-id="' + CSS.escape(String(id)) + '"] [data-action="edit"]'); if (any) any.focus(); }
    }

    async function move(p, position, action) {
      try {
        await api('POST', '/api/v1/pools/' + encodeURIComponent(p.id) + '/move', { position });
        setMsg(listMsg, 'ok', 'Moved ' + p.url + ' to position ' + (position + 1) + '.');
        await load();
        focusRow(p.id, action);
      } catch (e) { showError(listMsg, e); }
    }
    function toggle(p, btn) {
      return busy(btn, async () => {
        const body = { url: p.url, user: p.user, enabled: p.enabled === false };
        if (p.plugin) body.plugin = p.plugin;
        if (p.settings && typeof p.settings === 'object') body.settings = p.settings;
        try {
          await api('PUT', '/api/v1/pools/' + encodeURIComponent(p.id), body);
          setMsg(listMsg, 'ok', (body.enabled ? 'Enabled ' : 'Disabled ') + p.url + '.');
          await load();
          focusRow(p.id, 'toggle');
        } catch (e) { showError(listMsg, e); }
      });
    }
    function remove(p, btn) {
      if (!window.confirm('Delete the pool ' + p.url + '?')) return undefined;
      return busy(btn, async () => {
        try {
          await api('DELETE', '/api/v1/pools/' + encodeURIComponent(p.id));
          setMsg(listMsg, 'ok', 'Deleted ' + p.url + '.');
          if (editing === p.id) editing = null;
          await load();
          const first = table.querySelector('[data-action="edit"]');
          if (first) first.focus(); else $('#pool-url').focus();
        } catch (e) { showError(listMsg, e); }
      });
    }

    async function load() {
      try {
        const list = await api('GET', '/api/v1/pools');
        if (page.destroyed) return;
        pools = Array.isArray(list) ? list : [];
        if (editing != null && !pools.some((p) => p.id === editing)) editing = null;
        renderRows();
      } catch (e) { showError(listMsg, e); }
    }

    // Plugin names for the plugin field (pool kind).
    const dl = el('datalist', { id: 'pool-plugins-list' });
    main.append(dl);
    api('GET', '/api/v1/plugins').then((list) => {
      if (!Array.isArray(list)) return;
      dl.replaceChildren(...list.filter((p) => p.kind === 'pool').map((p) => el('option', { value: p.name })));
    }).catch(() => {});

    page.onStatus = (snap) => {
      const st = snap.shares && Array.isArray(snap.shares.pools) ? snap.shares.pools : [];
      for (const s of st) {
        const tr = table.querySelector('tr[data-pool-id="' + CSS.escape(String(s.id)) + '"]');
        if (tr) fillStats(tr, s);
      }
    };
    page.destroy = () => { page.destroyed = true; };
    body.append(el('tr', null, el('td', { colspan: '10', class: 'empty', text: 'Loading…' })));
    load();
    return page;
  }

  /* ================================================================== PLUGINS */

  function renderPlugins(main) {
    const page = { destroyed: false };
    const body = el('tbody');
    const listMsg = msgBox('plugins-msg');
    const heads = ['Name', 'Kind', 'Signature', 'Trusted', 'State', 'Last error', 'Memory', 'Time', 'Used by', 'Actions'];
    const numeric = new Set(['Memory', 'Time']);
    const table = el('table', { id: 'plugins-table', class: 'stack' },
      el('caption', { class: 'sr-only', text: 'Installed plugins' }),
      el('thead', null, el('tr', null, heads.map((h) => el('th', { scope: 'col', class: numeric.has(h) ? 'num' : null, text: h })))),
      body);

    const file = el('input', { type: 'file', id: 'plugin-file', accept: '.hwpkg', required: true });
    const upload = el('button', { type: 'submit', id: 'plugin-upload', class: 'btn btn-primary', text: 'Upload and install' });
    const result = el('p', { id: 'plugin-upload-result', class: 'msg', role: 'status', 'aria-live': 'polite' });
    const form = el('form', { id: 'plugin-upload-form', novalidate: true },
      el('div', { class: 'form-grid' }, field('Plugin package (.hwpkg)', file, 'A package made with “hashwatt plugin pack”.')),
      el('div', { class: 'form-actions' }, upload), result);

    append(main,
      pageHead('Plugins'),
      el('section', { class: 'card', 'aria-labelledby': 'plugins-title' },
        el('h2', { id: 'plugins-title', text: 'Installed plugins' }),
        el('p', { class: 'small muted' },
          'A plugin runs while a pool or a policy uses it. To switch a plugin on or off, enable or disable the ',
          el('a', { href: '#/pools', text: 'pools' }), ' or ', el('a', { href: '#/energy', text: 'energy policies' }), ' that use it.'),
        tableWrap('Installed plugins', table), listMsg),
      el('section', { class: 'card', 'aria-labelledby': 'upload-title' },
        el('h2', { id: 'upload-title', text: 'Install a plugin' }), form));

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(upload, async () => {
        const f = file.files && file.files[0];
        if (!f) { file.focus(); return setMsg(result, 'error', 'Choose a .hwpkg file first.'); }
        if (!/\.hwpkg$/i.test(f.name)) { file.focus(); return setMsg(result, 'error', 'That is not a .hwpkg file.'); }
        setMsg(result, 'info', 'Uploading ' + f.name + '…');
        try {
          const buf = await f.arrayBuffer();
          const r = await api('POST', '/api/v1/plugins', buf, { raw: true });
          setMsg(result, 'ok', (r && r.message) || 'Installed ' + f.name + '.');
          form.reset();
          await load();
        } catch (err) { showError(result, err); }
      });
    });

    function signature(p) {
      if (p.built_in) return badge('built in', 'plain');
      if (p.signed) return el('span', { class: 'signer' }, el('span', { class: 'badge ok', text: 'signed by' }), ' ', el('span', { class: 'mono small', text: p.signer || 'a trusted key' }));
      return badge('unsigned', 'warn');
    }
    function stateBadge(s) {
      const cls = { running: 'ok', idle: 'plain', failed: 'bad', disabled: 'plain' }[s] || 'plain';
      return badge(s || 'unknown', cls);
    }

    function renderRows(list) {
      if (!list.length) {
        body.replaceChildren(el('tr', null, el('td', { colspan: String(heads.length), class: 'empty', text: 'No plugins installed.' })));
        return;
      }
      body.replaceChildren(...list.map((p) => {
        const target = p.kind === 'policy' ? '#/energy' : '#/pools';
        const used = Array.isArray(p.used_by) ? p.used_by : [];
        // Pools are named by their id; say so, and give the URL when known.
        const usedLabel = (u) => {
          if (p.kind === 'policy') return String(u);
          const sp = S.snapshot && S.snapshot.shares && Array.isArray(S.snapshot.shares.pools) ? S.snapshot.shares.pools : [];
          const hit = sp.find((x) => String(x.id) === String(u));
          return 'pool ' + u + (hit && hit.url ? ' (' + hit.url + ')' : '');
        };
        let rm = el('span', { class: 'muted small', text: 'built in' });
        if (!p.built_in) {
          rm = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Remove', 'aria-label': 'Remove plugin ' + p.name });
          rm.addEventListener('click', () => {
            let q = 'Remove the plugin ' + p.name + '?';
            if (used.length) q += '\nIt is used by: ' + used.map(usedLabel).join(', ') + '.';
            if (!window.confirm(q)) return;
            busy(rm, async () => {
              try {
                await api('DELETE', '/api/v1/plugins/' + encodeURIComponent(p.name));
                setMsg(listMsg, 'ok', 'Removed ' + p.name + '.');
                await load();
                const f = $('#plugin-file'); if (f) f.focus();
              } catch (e) { showError(listMsg, e); }
            });
          });
        }
        return el('tr', { dataset: { plugin: p.name } },
          el('th', { scope: 'row', class: 'nowrap' }, el('span', { class: 'mono', text: p.name }), el('span', { class: 'sub', text: p.version ? 'version ' + p.version : 'version unknown' })),
          el('td', { text: p.kind || DASH }),
          el('td', { class: 'sig' }, signature(p)),
          el('td', null, p.built_in ? badge('yes', 'plain') : p.trusted ? badge('yes', 'ok') : badge('no', 'warn')),
          el('td', null, stateBadge(p.state), el('span', { class: 'sub nowrap', text: fmtInt(p.restarts ?? 0) + (p.restarts === 1 ? ' restart' : ' restarts') })),
          el('td', { class: 'break' }, p.last_error ? el('span', { class: 'val-bad', text: p.last_error }) : DASH),
          el('td', { class: 'num', text: fmtBytes(p.memory_bytes) }),
          el('td', { class: 'num', text: isNum(p.time_ms) ? p.time_ms.toFixed(1) + ' ms' : DASH }),
          el('td', { class: 'break clip' }, used.length ? el('ul', { class: 'list-plain' }, used.map((u) => el('li', null, el('a', { href: target, text: usedLabel(u) })))) : el('span', { class: 'muted', text: 'unused' })),
          el('td', { class: 'actions' }, rm));
      }));
      stackLabels(table);
    }

    async function load() {
      try {
        const list = await api('GET', '/api/v1/plugins');
        if (!page.destroyed) renderRows(Array.isArray(list) ? list : []);
      } catch (e) { showError(listMsg, e); }
    }
    page.destroy = () => { page.destroyed = true; };
    body.append(el('tr', null, el('td', { colspan: String(heads.length), class: 'empty', text: 'Loading…' })));
    load();
    return page;
  }

  /* ================================================================== ENERGY */

  function renderEnergy(main) {
    const page = { destroyed: false };

    // Manual override.
    const current = el('p', { id: 'energy-decision', class: 'decision-text', style: 'font-weight:600;margin:0 0 4px' });
    const manual = el('p', { class: 'small muted', id: 'energy-manual', style: 'margin:0 0 12px' });
    const select = el('select', { id: 'pause-minutes' },
      el('option', { value: '15', text: '15 minutes' }),
      el('option', { value: '60', text: '1 hour' }),
      el('option', { value: '240', text: '4 hours' }),
      el('option', { value: '1440', text: '24 hours' }),
      el('option', { value: '', text: 'until resumed' }));
    select.value = '60';
    const pauseBtn = el('button', { type: 'submit', id: 'pause-button', class: 'btn btn-primary', text: 'Pause mining' });
    const resumeBtn = el('button', { type: 'button', id: 'resume-button', class: 'btn', text: 'Resume' });
    const overrideMsg = msgBox('override-msg');
    const pauseForm = el('form', { id: 'pause-form', novalidate: true },
      el('div', { class: 'inline-form' }, field('Pause for', select), pauseBtn, resumeBtn),
      overrideMsg);
    pauseForm.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(pauseBtn, async () => {
        const minutes = select.value === '' ? null : parseInt(select.value, 10);
        try {
          const r = await api('POST', '/api/v1/mining/pause', { minutes });
          setMsg(overrideMsg, 'ok', (r && r.decision) || 'Paused.');
        } catch (err) { showError(overrideMsg, err); }
      });
    });
    resumeBtn.addEventListener('click', () => busy(resumeBtn, async () => {
      try {
        const r = await api('POST', '/api/v1/mining/resume');
        setMsg(overrideMsg, 'ok', (r && r.decision) || 'Resumed.');
      } catch (err) { showError(overrideMsg, err); }
    }));

    // Policies.
    const policiesBox = el('div', { class: 'stack', id: 'policies' }, el('p', { class: 'loading', text: 'Loading…' }));
    const policiesMsg = msgBox('policies-msg');

    // Reports.
    const today = el('div', { id: 'energy-today' }, el('p', { class: 'loading', text: 'Loading…' }));
    const month = el('div', { id: 'energy-month' }, el('p', { class: 'loading', text: 'Loading…' }));
    const monthTitle = el('h2', { id: 'month-title', text: 'This month' });
    const csv = el('a', { id: 'energy-csv', class: 'btn btn-small', href: '/api/v1/energy/report?period=month&format=csv', download: 'hashwatt-energy-month.csv', text: 'Download CSV' });

    append(main,
      pageHead('Energy'),
      el('section', { class: 'card', 'aria-labelledby': 'override-title' },
        el('h2', { id: 'override-title', text: 'Manual control' }), current, manual, pauseForm),
      el('section', { class: 'card', 'aria-labelledby': 'policies-title' },
        el('div', { class: 'card-head' }, el('h2', { id: 'policies-title', tabindex: '-1', text: 'Policies' }),
          el('span', { class: 'small muted', text: 'The most restrictive enabled policy decides.' })),
        policiesBox, policiesMsg, addPolicyForm()),
      el('section', { class: 'card', 'aria-labelledby': 'today-title' },
        el('h2', { id: 'today-title', text: 'Today' }), today),
      el('section', { class: 'card', 'aria-labelledby': 'month-title' },
        el('div', { class: 'card-head' }, monthTitle, csv), month),
      backtestCard());

    function updateDecision(snap) {
      const en = (snap && snap.energy) || {};
      setText(current, en.verdict ? verdictText(en.verdict) : (snap && snap.decision) || DASH);
      current.className = 'decision-text ' + (en.verdict ? 'val-' + ({ run: 'ok', limit: 'warn', pause: 'bad' }[modeName(en.verdict.mode)] || '') : '');
      setText(manual, en.manual ? manualText(en.manual) : 'No manual override: the policies decide.');
      const st = Array.isArray(en.policies) ? en.policies : [];
      for (const ps of st) {
        const card = policiesBox.querySelector('[data-policy="' + CSS.escape(String(ps.name)) + '"]');
        if (card && card._fillStatus) card._fillStatus(ps);
      }
    }

    function policyCard(p) {
      const status = el('dl', { class: 'kv small' });
      const modeBadge = el('span');
      const card = el('article', { class: 'card policy', dataset: { policy: p.name }, 'aria-labelledby': 'pol-' + p.name });
      function fillStatus(s) {
        s = s || {};
        card.className = 'card policy ' + (s.last_mode ? modeClass(s.last_mode) : '');
        modeBadge.replaceChildren(s.last_mode ? badge(modeShort(s.last_mode), modeClass(s.last_mode)) : badge('no decision yet', 'plain'));
        const rows = [
          ['Current verdict', [s.last_mode ? modeWord(s.last_mode) : DASH, s.reason ? ': ' + s.reason : '', s.fail_safe_active ? ' (fail-safe)' : '']],
          ['State', s.running === false ? 'not running (waiting to restart)' : 'running'],
          ['Failures', fmtInt(s.failures ?? 0)],
          ['Last error', s.last_error || DASH],
          ['Last evaluated', isNum(s.last_eval_ms) ? fmtClockS(s.last_eval_ms) : DASH],
        ];
        status.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { class: k === 'Last error' && s.last_error ? 'val-bad' : null }, v)]));
      }
      card._fillStatus = fillStatus;
      const en = checkbox(uid('pe'), 'Enabled', p.enabled !== false);
      const enMsg = msgBox();
      en.input.addEventListener('change', async () => {
        const want = en.input.checked;
        try {
          await api('POST', '/api/v1/policies/' + encodeURIComponent(p.name) + '/enabled', { enabled: want });
          p.enabled = want;
          setMsg(enMsg, 'ok', p.name + (want ? ' enabled.' : ' disabled.'));
        } catch (e) { en.input.checked = !want; showError(enMsg, e); }
      });
      const ta = el('textarea', { spellcheck: 'false', rows: '6', id: uid('pc') });
      ta.value = JSON.stringify(p.config ?? {}, null, 2);
      const save = el('button', { type: 'submit', class: 'btn btn-primary btn-small', text: 'Save settings' });
      const del = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Delete policy', 'aria-label': 'Delete policy ' + p.name });
      const msg = msgBox();
      const form = el('form', { novalidate: true, 'aria-label': 'Settings of ' + p.name },
        el('div', { class: 'form-grid' }, field('Settings (JSON)', ta)),
        el('div', { class: 'form-actions' }, save, del), msg);
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        busy(save, async () => {
          let config;
          ta.removeAttribute('aria-invalid');
          try { config = JSON.parse(ta.value); } catch (err) {
            ta.setAttribute('aria-invalid', 'true');
            return setMsg(msg, 'error', 'The settings are not valid JSON: ' + err.message);
          }
          try {
            await api('PUT', '/api/v1/policies/' + encodeURIComponent(p.name), { config });
            ta.value = JSON.stringify(config, null, 2);
            setMsg(msg, 'ok', 'Settings saved.');
          } catch (err) { showError(msg, err); }
        });
      });
      del.addEventListener('click', () => {
        if (!window.confirm('Delete the policy ' + p.name + '?')) return;
        busy(del, async () => {
          try {
            await api('DELETE', '/api/v1/policies/' + encodeURIComponent(p.name));
            setMsg(policiesMsg, 'ok', 'Deleted policy ' + p.name + '.');
            await loadPolicies();
            $('#policies-title').focus();
          } catch (err) { showError(msg, err); }
        });
      });
      append(card,
        el('div', { class: 'policy-head' },
          el('h3', { id: 'pol-' + p.name }, el('span', { class: 'mono', text: p.name }), ' ', modeBadge),
          en.label),
        el('div', { class: 'meta' },
          el('span', null, 'plugin: ', el('span', { class: 'mono', text: p.plugin || DASH })),
          el('span', { text: 'fail-safe: ' + (p.fail_safe === 'run' ? 'keep mining' : p.fail_safe === 'pause' ? 'pause' : (p.fail_safe || DASH)) })),
        enMsg, status, form);
      fillStatus(p.status);
      return card;
    }

    async function loadPolicies() {
      try {
        const list = await api('GET', '/api/v1/policies');
        if (page.destroyed) return;
        const arr = Array.isArray(list) ? list : [];
        policiesBox.replaceChildren(...(arr.length ? arr.map(policyCard) : [el('p', { class: 'muted', text: 'No policies: hashwatt mines at full power unless paused by hand.' })]));
        if (S.snapshot) updateDecision(S.snapshot);
      } catch (e) { showError(policiesMsg, e); }
    }

    function addPolicyForm() {
      const name = el('input', { type: 'text', id: 'policy-name', autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9._-]{1,64}', placeholder: 'e.g. surplus-only' });
      const plugin = el('select', { id: 'policy-plugin' }, el('option', { value: '', text: 'Loading…' }));
      const fs = el('select', { id: 'policy-fail-safe' }, el('option', { value: 'pause', text: 'pause mining' }), el('option', { value: 'run', text: 'keep mining' }));
      const en = checkbox('policy-enabled', 'Enabled', true);
      const cfg = el('textarea', { id: 'policy-config', spellcheck: 'false', rows: '4' });
      cfg.value = '{}';
      const submit = el('button', { type: 'submit', class: 'btn btn-primary', id: 'policy-add', text: 'Add policy' });
      const msg = msgBox('policy-add-msg');
      const form = el('form', { id: 'policy-form', novalidate: true },
        el('div', { class: 'form-grid' },
          field('Name', name, 'Letters, digits, dot, dash, underscore.'),
          field('Plugin', plugin),
          field('If it fails', fs),
          el('div', { class: 'field' }, el('span', { class: 'label', 'aria-hidden': 'true', text: '\u00a0' }), en.label),
          field('Settings (JSON)', cfg)),
        el('div', { class: 'form-actions' }, submit), msg);
      api('GET', '/api/v1/plugins').then((list) => {
        const pol = (Array.isArray(list) ? list : []).filter((p) => p.kind === 'policy');
        plugin.replaceChildren(...(pol.length ? pol.map((p) => el('option', { value: p.name, text: p.name })) : [el('option', { value: '', text: 'no policy plugins installed' })]));
      }).catch(() => plugin.replaceChildren(el('option', { value: '', text: 'unavailable' })));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        busy(submit, async () => {
          name.removeAttribute('aria-invalid');
          if (!/^[A-Za-z0-9._-]{1,64}$/.test(name.value.trim())) { name.setAttribute('aria-invalid', 'true'); name.focus(); return setMsg(msg, 'error', 'Enter a name of 1 to 64 letters, digits, “.”, “-” or “_”.'); }
          if (!plugin.value) { plugin.focus(); return setMsg(msg, 'error', 'Choose a policy plugin.'); }
          let config;
          try { config = JSON.parse(cfg.value || '{}'); } catch (err) { cfg.focus(); return setMsg(msg, 'error', 'The settings are not valid JSON: ' + err.message); }
          try {
            await api('POST', '/api/v1/policies', { name: name.value.trim(), plugin: plugin.value, enabled: en.input.checked, fail_safe: fs.value, config });
            setMsg(msg, 'ok', 'Policy ' + name.value.trim() + ' added.');
            name.value = ''; cfg.value = '{}';
            await loadPolicies();
          } catch (err) { showError(msg, err); }
        });
      });
      return el('details', { style: 'margin-top:16px' },
        el('summary', { style: 'cursor:pointer;color:var(--accent);font-weight:600;width:max-content', text: 'Add a policy' }),
        el('div', { style: 'margin-top:10px' }, form));
    }

    /* ---- backtest ---- */
    function backtestCard() {
      const MAX_BYTES = 8 << 20;
      const which = el('select', { id: 'bt-policy' }, el('option', { value: '', text: 'Loading…' }));
      const file = el('input', { type: 'file', id: 'bt-file', accept: '.csv,text/csv' });
      const watts = el('input', { type: 'number', id: 'bt-watts', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'as configured' });
      const th = el('input', { type: 'number', id: 'bt-terahash', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'as hashing now' });
      const unit = el('select', { id: 'bt-unit' }, el('option', { value: 'per-kwh', text: 'per kWh' }), el('option', { value: 'per-mwh', text: 'per MWh' }));
      const hp = el('input', { type: 'number', id: 'bt-hashprice', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'optional' });
      const settings = el('textarea', { id: 'bt-config', spellcheck: 'false', rows: '3' });
      const configs = {};
      const run = el('button', { type: 'submit', class: 'btn btn-primary', id: 'bt-run', text: 'Run backtest' });
      const msg = msgBox('bt-msg');
      const result = el('div', { id: 'bt-result' });
      const form = el('form', { id: 'bt-form', novalidate: true },
        el('div', { class: 'form-grid' },
          field('Policy', which),
          field('Series (CSV)', file, 'A time column, then one column per signal (price, surplus…), as the policy names them.'),
          field('Power at full load (W)', watts),
          field('Hashrate (TH/s)', th),
          field('Prices are', unit),
          field('Hash price (per TH/s per day)', hp),
          field('Settings (JSON)', settings, 'The policy’s settings to replay with; try other thresholds here.')),
        el('div', { class: 'form-actions' }, run), msg);
      Promise.all([api('GET', '/api/v1/policies').catch(() => []), api('GET', '/api/v1/plugins').catch(() => [])]).then(([pols, plugs]) => {
        const opts = [];
        for (const p of Array.isArray(pols) ? pols : []) {
          configs['policy:' + p.name] = p.config ?? {};
          opts.push(el('option', { value: 'policy:' + p.name, text: p.name + ' (configured, ' + p.plugin + ')' }));
        }
        for (const p of (Array.isArray(plugs) ? plugs : []).filter((x) => x.kind === 'policy')) opts.push(el('option', { value: 'plugin:' + p.name, text: p.name + ' (plugin)' }));
        which.replaceChildren(...(opts.length ? opts : [el('option', { value: '', text: 'no policies' })]));
        fillSettings();
      });
      function fillSettings() { settings.value = JSON.stringify(configs[which.value] ?? {}, null, 2); }
      which.addEventListener('change', fillSettings);
      const num = (input) => (input.value.trim() === '' ? undefined : Number(input.value));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        busy(run, async () => {
          setMsg(msg, '', '');
          if (!which.value) { which.focus(); return setMsg(msg, 'error', 'Choose a policy.'); }
          const f = file.files && file.files[0];
          if (!f) { file.focus(); return setMsg(msg, 'error', 'Choose a CSV file with the series.'); }
          if (f.size > MAX_BYTES) return setMsg(msg, 'error', 'The file is ' + (f.size / 1048576).toFixed(1) + ' MiB; at most 8 MiB can be backtested at once.');
          for (const i of [watts, th, hp]) {
            const v = num(i);
            if (v !== undefined && !(Number.isFinite(v) && v >= 0)) { i.focus(); return setMsg(msg, 'error', 'Enter a number of 0 or more.'); }
          }
          let config;
          settings.removeAttribute('aria-invalid');
          try { config = JSON.parse(settings.value.trim() || '{}'); } catch (err) {
            settings.setAttribute('aria-invalid', 'true'); settings.focus();
            return setMsg(msg, 'error', 'The settings are not valid JSON: ' + err.message);
          }
          const [kind, name] = [which.value.slice(0, which.value.indexOf(':')), which.value.slice(which.value.indexOf(':') + 1)];
          const body = { series: await f.text(), config, watts: num(watts), terahash: num(th), price_unit: unit.value, hashprice: num(hp) };
          body[kind] = name;
          setMsg(msg, '', 'Replaying ' + f.name + '…');
          try {
            const r = await api('POST', '/api/v1/energy/backtest', body);
            if (page.destroyed) return;
            setMsg(msg, 'ok', 'Replayed ' + fmtInt(r.rows) + ' rows in ' + (r.elapsed_ms / 1000).toFixed(2) + ' s. Nothing was changed on the appliance.');
            showBacktest(r);
          } catch (err) { showError(msg, err); }
        });
      });
      function showBacktest(r) {
        const w = r.with_policy || {}, o = r.always_on || {};
        const money = (v) => (isNum(v) ? v.toFixed(2) : DASH);
        const rows = [
          ['Hours mining', w.hours_mining, o.hours_mining, (v) => v.toFixed(1)],
          ['Hours paused', w.hours_paused, o.hours_paused, (v) => v.toFixed(1)],
          ['Energy (kWh)', w.kwh, o.kwh, (v) => v.toFixed(1)],
        ];
        if (r.price_column) rows.push(['Energy cost', w.cost, o.cost, money]);
        if (w.co2_kg > 0 || o.co2_kg > 0) rows.push(['CO₂ (kg)', w.co2_kg, o.co2_kg, (v) => v.toFixed(1)]);
        rows.push(['Hashes', w.hashes, o.hashes, (v) => fmtSi(v, 'H')]);
        if (isNum(w.revenue)) rows.push(['Revenue', w.revenue, o.revenue, money]);
        const tbl = el('table', { class: 'small', id: 'bt-table' },
          el('thead', null, el('tr', null, el('th', { scope: 'col', text: '' }), el('th', { scope: 'col', class: 'num', text: 'With policy' }),
            el('th', { scope: 'col', class: 'num', text: 'Always on' }), el('th', { scope: 'col', class: 'num', text: 'Difference' }))),
          el('tbody', null, rows.map(([k, a, b, f]) => el('tr', null, el('th', { scope: 'row', text: k }),
            el('td', { class: 'num', text: isNum(a) ? f(a) : DASH }), el('td', { class: 'num', text: isNum(b) ? f(b) : DASH }),
            el('td', { class: 'num', text: isNum(a) && isNum(b) ? f(a - b) : DASH })))));
        const pauses = Array.isArray(r.pauses) ? r.pauses : [];
        const chart = el('img', { id: 'bt-chart', alt: 'Backtest chart: mining duty per row' + (r.price_column ? ' against the price' : '') + '.', style: 'width:100%;height:auto;margin-top:12px',
          src: 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(r.chart_svg || '') });
        const report = el('a', { class: 'btn btn-small', id: 'bt-report', download: 'backtest-' + r.policy + '.txt', href: 'data:text/plain;charset=utf-8,' + encodeURIComponent(r.report || ''), text: 'Download report' });
        result.replaceChildren(
          el('div', { class: 'card-head', style: 'margin-top:16px' }, el('h3', { text: r.policy + ': ' + fmtInt(r.rows) + ' rows, ' + new Date(r.start_ms).toISOString().slice(0, 10) + ' to ' + new Date(r.end_ms).toISOString().slice(0, 10), style: 'margin:0' }), report),
          el('div', { class: 'figures' },
            figure('Mined', (w.hours_mining ?? 0).toFixed(1) + ' h', 'of ' + (o.hours_mining ?? 0).toFixed(1) + ' h'),
            figure('Hashes forgone', (r.hashes_forgone_percent ?? 0).toFixed(1) + ' %', 'against always-on'),
            r.price_column ? figure('Energy cost saved', money(r.cost_saved), 'in the series’ currency') : null,
            isNum(r.revenue_forgone) ? figure('Revenue forgone', money(r.revenue_forgone)) : null,
            r.failures ? figure('Policy failures', fmtInt(r.failures), 'its fail-safe applied') : null),
          tableWrap('Backtest figures', tbl),
          chart,
          pauses.length ? el('div', { style: 'margin-top:12px' }, el('h3', { text: 'Paused by' }),
            el('ul', { class: 'list-plain small', id: 'bt-pauses' }, pauses.map((p) => el('li', null, p.hours.toFixed(1) + ' h — ' + p.cause)))) : el('p', { class: 'small muted', text: 'Never paused.' }));
      }
      return el('section', { class: 'card', 'aria-labelledby': 'bt-title' },
        el('div', { class: 'card-head' }, el('h2', { id: 'bt-title', text: 'Backtest a policy' }),
          el('span', { class: 'small muted', text: 'What a policy would have done over past prices or signals.' })),
        form, result);
    }

    /* ---- reports ---- */
    function figure(label, value, sub) {
      return el('div', { class: 'figure' }, el('div', { class: 'tile-label', text: label }), el('div', { class: 'tile-value', text: value }), sub ? el('div', { class: 'tile-sub', text: sub }) : null);
    }
    function renderToday(r) {
      const t = (r && r.total) || (r && Array.isArray(r.days) && r.days[0]) || null;
      if (!t) { today.replaceChildren(el('p', { class: 'muted', text: 'No figures for today yet.' })); return; }
      const paused = Array.isArray(t.paused) ? t.paused : [];
      const avgHs = isNum(t.hashes) && isNum(t.mining_s) && t.mining_s > 0 ? t.hashes / t.mining_s : null;
      today.replaceChildren(
        el('div', { class: 'figures' },
          figure('Energy', fmtKwh(t.kwh), isNum(t.metered_s) ? 'metered ' + fmtHm(t.metered_s) : null),
          figure('Cost', fmtMoney(t.cost, t.currency), t.cost == null ? 'no tariff configured' : null),
          figure('CO₂', fmtKg(t.co2_g)),
          figure('Mining time', fmtHm(t.mining_s), isNum(r.period_hours) ? 'of ' + r.period_hours.toFixed(1) + ' h' : null),
          figure('Hashes', fmtSi(t.hashes), avgHs ? 'average ' + fmtHs(avgHs) : null)),
        paused.length
          ? el('div', { style: 'margin-top:12px' }, el('h3', { text: 'Paused today' }),
            el('ul', { class: 'list-plain small' }, paused.map((p) => el('li', null, el('strong', { text: p.policy }), ' — ', p.reason || '', ': ', fmtHm(p.secs)))))
          : el('p', { class: 'small muted', style: 'margin:12px 0 0', text: 'Not paused today.' }),
        r.time_zone ? el('p', { class: 'small muted', style: 'margin:8px 0 0', text: 'Time zone: ' + r.time_zone }) : null);
    }

    function barChart(title, days, valueOf, fmt, cls, unitLabel, slots) {
      const W = Math.max(280, Math.floor(month.clientWidth || 720)), H = window.innerWidth < 760 ? 150 : 180, L = 46, B = 22, T = 10, R = 4;
      const vals = days.map(valueOf);
      const max = Math.max(0, ...vals.filter(isNum));
      const nice = niceMax(max);
      const n = Math.max(slots || 0, days.length, 1);
      const slot = (W - L - R) / n;
      const bw = Math.max(2, Math.min(slot * 0.72, 34));
      const y = (v) => T + (H - T - B) * (1 - v / nice);
      const total = vals.filter(isNum).reduce((a, b) => a + b, 0);
      const s = svg('svg', { class: 'bars', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': title + ' per day; total ' + fmt(total) + '. A table follows.' });
      for (const f of [0, 0.5, 1]) {
        const yy = y(nice * f);
        s.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: yy, y2: yy }));
        s.append(svg('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, fmtAxis(nice * f)));
      }
      days.forEach((d, i) => {
        const v = vals[i];
        const dayNum = parseInt(String(d.label || '').slice(-2), 10);
        const pos = slots && Number.isFinite(dayNum) ? dayNum - 1 : i;
        const x = L + pos * slot + (slot - bw) / 2;
        if (isNum(v) && v > 0) {
          s.append(svg('rect', { class: 'bar ' + cls, x: x.toFixed(1), y: y(v).toFixed(1), width: bw.toFixed(1), height: Math.max(0.5, (H - B) - y(v)).toFixed(1), rx: 1.5 },
            svg('title', null, (d.label || '') + ': ' + fmt(v))));
        }
      });
      for (let i = 0; i < n; i++) {
        const num = i + 1;
        if (n <= 12 || num === 1 || num % 5 === 0) {
          s.append(svg('text', { x: (L + i * slot + slot / 2).toFixed(1), y: H - 6, 'text-anchor': 'middle' }, String(num)));
        }
      }
      const tbl = el('table', { class: 'small' },
        el('thead', null, el('tr', null, el('th', { scope: 'col', text: 'Day' }), el('th', { scope: 'col', class: 'num', text: unitLabel }))),
        el('tbody', null, days.map((d, i) => el('tr', null, el('td', { text: d.label }), el('td', { class: 'num', text: fmt(vals[i]) })))));
      return el('div', { class: 'chart-block' },
        el('div', { class: 'card-head', style: 'margin-bottom:2px' }, el('h3', { text: title, style: 'margin:0' }), el('span', { class: 'small muted', text: 'total ' + fmt(total) })),
        s,
        el('details', null, el('summary', { text: 'Show as table' }), tableWrap(title + ' per day', tbl)));
    }
    function niceMax(v) {
      if (!(v > 0)) return 1;
      const e = Math.pow(10, Math.floor(Math.log10(v)));
      for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * e >= v) return m * e;
      return 10 * e;
    }
    function fmtAxis(v) {
      if (v === 0) return '0';
      if (v >= 100) return Math.round(v).toString();
      if (v >= 10) return v.toFixed(0);
      if (v >= 1) return v.toFixed(1);
      return v.toFixed(2);
    }
    let lastMonth = null, monthW = 0;
    function renderMonth(r) {
      lastMonth = r;
      monthW = month.clientWidth;
      const days = Array.isArray(r && r.days) ? r.days : [];
      const ym = /^(\d{4})-(\d{2})$/.exec((r && r.label) || '');
      const slots = ym ? new Date(+ym[1], +ym[2], 0).getDate() : 0;
      if (r && r.label) {
        setText(monthTitle, 'This month (' + r.label + ')');
        csv.setAttribute('download', 'hashwatt-energy-' + r.label + '.csv');
      }
      if (!days.length) { month.replaceChildren(el('p', { class: 'muted', text: 'No figures for this month yet.' })); return; }
      const currency = (days.find((d) => d.currency) || {}).currency || (r.total && r.total.currency) || null;
      const hasCost = days.some((d) => isNum(d.cost));
      month.replaceChildren(
        barChart('Energy (kWh)', days, (d) => d.kwh, fmtKwh, 'kwh', 'kWh', slots),
        hasCost ? barChart('Cost' + (currency ? ' (' + currency + ')' : ''), days, (d) => d.cost, (v) => fmtMoney(v, currency), 'cost', 'Cost', slots)
          : el('p', { class: 'small muted chart-block', text: 'Cost: no tariff configured.' }),
        barChart('CO₂ (kg)', days, (d) => (isNum(d.co2_g) ? d.co2_g / 1000 : null), (v) => (isNum(v) ? v.toFixed(2) + ' kg' : DASH), 'co2', 'kg', slots));
    }

    Promise.all([
      api('GET', '/api/v1/energy/report?period=day').then(renderToday).catch((e) => { if (e.status !== 401) today.replaceChildren(el('p', { class: 'msg error', text: e.message })); }),
      api('GET', '/api/v1/energy/report?period=month').then(renderMonth).catch((e) => { if (e.status !== 401) month.replaceChildren(el('p', { class: 'msg error', text: e.message })); }),
    ]);
    loadPolicies();
    if (S.snapshot) updateDecision(S.snapshot);
    else api('GET', '/api/v1/status').then((s) => { if (!page.destroyed && s) { S.snapshot = S.snapshot || s; updateDecision(s); } }).catch(() => {});

    let ro = null;
    if (window.ResizeObserver) {
      ro = new ResizeObserver(() => {
        if (lastMonth && Math.abs(month.clientWidth - monthW) > 8) {
          const open = [...month.querySelectorAll('details')].map((d) => d.open);
          renderMonth(lastMonth);
          month.querySelectorAll('details').forEach((d, i) => { d.open = !!open[i]; });
        }
      });
      ro.observe(month);
    }
    page.onStatus = updateDecision;
    page.destroy = () => { page.destroyed = true; if (ro) ro.disconnect(); };
    return page;
  }

  /* ================================================================== SYSTEM */

  function renderSystem(main) {
    const page = { destroyed: false };
    const info = el('div', null, el('p', { class: 'loading', text: 'Loading…' }));
    const infoMsg = msgBox();
    let uptimeDd = null;

    const restart = el('button', { type: 'button', id: 'restart-button', class: 'btn btn-danger', text: 'Restart hashwatt' });
    const restartMsg = msgBox('restart-msg');
    restart.addEventListener('click', () => restartFlow(restart, restartMsg));

    const tail = el('div', { id: 'log-tail', class: 'log-tail', role: 'log', 'aria-live': 'off', 'aria-label': 'Live log, newest at the bottom', tabindex: '0' });
    const follow = el('span', { id: 'log-follow', text: 'Following new lines' });
    const jump = el('button', { type: 'button', class: 'btn btn-small', text: 'Jump to latest', hidden: true });
    const logMsg = msgBox();
    const count = el('span');

    append(main,
      pageHead('System'),
      el('div', { class: 'grid-2' },
        el('section', { class: 'card', 'aria-labelledby': 'about-title' }, el('h2', { id: 'about-title', text: 'This appliance' }), info, infoMsg),
        el('div', { class: 'stack' },
          el('section', { class: 'card', 'aria-labelledby': 'restart-title' },
            el('h2', { id: 'restart-title', text: 'Restart' }),
            el('p', { class: 'muted', text: 'Restarts the hashwatt service. Mining stops for a few seconds; settings are kept.' }),
            restart, restartMsg),
          firmwareCard())),
      el('section', { class: 'card', 'aria-labelledby': 'log-title', style: 'margin-top:16px' },
        el('div', { class: 'card-head' }, el('h2', { id: 'log-title', text: 'Log' }),
          el('div', { class: 'log-tools' }, follow, jump, count)),
        tail, logMsg));

    /* ---- firmware: both slots, and a signed bundle upload ---- */
    function firmwareCard() {
      const slots = el('div', { id: 'fw-slots' }, el('p', { class: 'loading', text: 'Loading…' }));
      const file = el('input', { type: 'file', id: 'fw-file', accept: '.raucb', required: true });
      const upload = el('button', { type: 'submit', id: 'fw-upload', class: 'btn btn-primary', text: 'Verify and install' });
      const result = el('p', { id: 'fw-result', class: 'msg', role: 'status', 'aria-live': 'polite' });
      const reboot = el('button', { type: 'button', id: 'fw-reboot', class: 'btn', text: 'Reboot into the update', hidden: true });
      reboot.addEventListener('click', () => busy(reboot, async () => {
        try {
          const r = await api('POST', '/api/v1/system/reboot');
          setMsg(result, 'info', ((r && r.message) || 'Rebooting') + ': the panel comes back when the new slot has started.');
        } catch (err) { showError(result, err); }
      }));
      const form = el('form', { id: 'fw-form', novalidate: true },
        field('Update bundle (.raucb)', file, 'Signed bundles only; checked before anything is written. It boots once on trial and is kept only if healthy.'),
        el('div', { class: 'form-actions' }, upload, reboot), result);
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        busy(upload, async () => {
          const f = file.files && file.files[0];
          if (!f) { file.focus(); return setMsg(result, 'error', 'Choose a .raucb bundle first.'); }
          setMsg(result, 'info', 'Uploading and verifying ' + f.name + '…');
          try {
            const r = await api('POST', '/api/v1/system/update', await f.arrayBuffer(), { raw: true });
            setMsg(result, 'ok', (r && r.message) || 'Installed.');
            form.reset();
            reboot.hidden = false;
            loadSlots();
          } catch (err) { showError(result, err); }
        });
      });
      function loadSlots() {
        api('GET', '/api/v1/system/update').then((st) => {
          const list = Array.isArray(st && st.slots) ? st.slots : [];
          slots.replaceChildren(el('table', { id: 'fw-slot-table' },
            el('caption', { class: 'sr-only', text: 'Root slots' }),
            el('thead', null, el('tr', null, ['Slot', 'Version', 'Boot', 'State'].map((h) => el('th', { scope: 'col', text: h })))),
            el('tbody', null, list.map((sl) => el('tr', null,
              el('th', { scope: 'row' }, String(sl.bootname || sl.name), sl.bootname && sl.bootname === st.booted ? el('span', { class: 'sub', text: 'booted' }) : null),
              el('td', { text: sl.version || 'unknown' }),
              el('td', null, sl.boot_status === 'good' ? badge('good', 'ok') : sl.boot_status ? badge(sl.boot_status, 'bad') : DASH),
              el('td', { text: sl.state || DASH }))))),
            st.rollback ? el('p', { id: 'fw-rollback', class: 'msg error', role: 'alert', text: 'Update rolled back: ' + st.rollback }) : null,
            Array.isArray(st.failed_boots) && st.failed_boots.length
              ? el('details', { id: 'fw-failed-boots' }, el('summary', { text: 'Failed trial boots (' + st.failed_boots.length + ')' }),
                el('ul', { class: 'list-plain mono small' }, st.failed_boots.map((b) => el('li', { text: b }))))
              : null);
        }).catch((e) => {
          slots.replaceChildren(el('p', { class: 'muted', text: e.message }));
          upload.disabled = true;
        });
      }
      loadSlots();
      return el('section', { class: 'card', 'aria-labelledby': 'fw-title' },
        el('h2', { id: 'fw-title', text: 'Firmware update' }), slots, form);
    }

    /* ---- info ---- */
    function renderInfo(sys) {
      const devs = Array.isArray(sys.devices) ? sys.devices : [];
      uptimeDd = el('dd', { id: 'sys-uptime', text: fmtDuration(sys.uptime_secs) });
      const rows = [
        ['Version', el('dd', { id: 'sys-version', text: sys.version || DASH })],
        ['Backend', el('dd', { text: sys.backend || DASH })],
        ['Threads', el('dd', { text: fmtInt(sys.threads) })],
        ['Devices', el('dd', null, devs.length ? el('ul', { class: 'list-plain' }, devs.map((d) => el('li', null, el('strong', { text: d.name }), ' · ' + (d.kind || '?') + ' · ' + (d.model || '?')))) : DASH)],
        ['Uptime', uptimeDd],
        ['Host name', el('dd', { class: 'mono', text: sys.hostname || DASH })],
        ['HTTPS', el('dd', null, sys.tls ? badge('enabled', 'ok') : badge('off (plain HTTP)', 'warn'))],
        ['Certificate SHA-256', el('dd', { class: 'mono small', id: 'sys-cert', text: sys.cert_fingerprint_sha256 || (sys.tls ? 'unknown' : DASH) })],
      ];
      if (sys.config_path) rows.push(['Configuration', el('dd', { class: 'mono small', text: sys.config_path })]);
      info.replaceChildren(el('dl', { class: 'kv' }, rows.flatMap(([k, dd]) => [el('dt', { text: k }), dd])));
    }
    api('GET', '/api/v1/system').then((s) => { if (!page.destroyed && s) renderInfo(s); })
      .catch((e) => { info.replaceChildren(); showError(infoMsg, e); });

    /* ---- log tail ---- */
    const MAX = 500;
    let following = true;
    let loading = true;
    const pending = [];
    const seen = new Set();
    const key = (l) => l.at_ms + '|' + l.level + '|' + l.target + '|' + l.message;
    function lineEl(l) {
      const lv = String(l.level || 'INFO').toUpperCase();
      return el('div', { class: 'log-line lv-' + lv.replace(/[^A-Z]/g, '') },
        el('span', { class: 't', text: fmtClockS(l.at_ms) }), ' ',
        el('span', { class: 'lv', text: lv }), ' ',
        el('span', { class: 'tg', text: l.target || '' }), ' ',
        el('span', { class: 'm', text: l.message || '' }));
    }
    function atBottom() { return tail.scrollHeight - tail.scrollTop - tail.clientHeight < 24; }
    function addLines(lines) {
      if (!lines.length) return;
      const stick = following;
      const frag = document.createDocumentFragment();
      for (const l of lines) frag.append(lineEl(l));
      tail.append(frag);
      let removed = 0;
      while (tail.childElementCount > MAX) {
        if (!stick) removed += tail.firstElementChild.offsetHeight;
        tail.firstElementChild.remove();
      }
      if (stick) tail.scrollTop = tail.scrollHeight;
      else if (removed) tail.scrollTop = Math.max(0, tail.scrollTop - removed);
      setText(count, tail.childElementCount + ' lines');
    }
    function setFollowing(f) {
      if (following === f) return;
      following = f;
      setText(follow, f ? 'Following new lines' : 'Paused: scrolled up');
      jump.hidden = f;
    }
    tail.addEventListener('scroll', () => setFollowing(atBottom()));
    jump.addEventListener('click', () => { tail.scrollTop = tail.scrollHeight; setFollowing(true); tail.focus(); });

    api('GET', '/api/v1/logs?lines=200').then((lines) => {
      if (page.destroyed) return;
      const arr = Array.isArray(lines) ? lines : [];
      arr.forEach((l) => seen.add(key(l)));
      const lastAt = arr.length ? arr[arr.length - 1].at_ms : -Infinity;
      const extra = pending.filter((l) => l.at_ms > lastAt || !seen.has(key(l)));
      loading = false;
      pending.length = 0;
      if (!arr.length && !extra.length) tail.append(el('div', { class: 'log-line lv-DEBUG', 'data-empty': '1', text: 'No log lines yet.' }));
      addLines(arr.concat(extra));
      seen.clear();
    }).catch((e) => { loading = false; showError(logMsg, e); });

    page.onLog = (l) => {
      if (!l || typeof l !== 'object') return;
      if (loading) { pending.push(l); return; }
      const empty = tail.querySelector('[data-empty]');
      if (empty) empty.remove();
      addLines([l]);
    };
    page.onStatus = (snap) => { if (uptimeDd) setText(uptimeDd, fmtDuration(snap.uptime_secs)); };
    page.destroy = () => { page.destroyed = true; };
    return page;
  }

  /** Restart: confirm, POST, then wait for the server to come back and start over. */
  async function restartFlow(btn, msg) {
    if (!window.confirm('Restart hashwatt now? Mining stops for a few seconds.')) return;
    try {
      await busy(btn, () => api('POST', '/api/v1/system/restart'));
    } catch (e) { showError(msg, e); return; }
    if (!S.es) openEvents();
    // Keep the event stream open: its error is the sign that the old process has stopped.
    S.restarting = true;
    S.restartDown = false;
    const overlayText = el('p', { class: 'muted', text: 'Waiting for hashwatt to come back…' });
    const box = el('div', { class: 'card', role: 'status', 'aria-live': 'polite', tabindex: '-1' },
      el('div', { class: 'spinner', 'aria-hidden': 'true' }),
      el('h2', { id: 'restarting-title', text: 'Restarting…' }), overlayText);
    const overlay = el('div', { class: 'overlay', id: 'restart-overlay', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'restarting-title' }, box);
    document.body.append(overlay);
    box.focus();
    const t0 = Date.now();
    let sawDown = false;
    await sleep(1000);
    for (;;) {
      if (S.restartDown) sawDown = true;
      let up = false;
      try {
        const r = await fetch('/api/v1/setup', { credentials: 'same-origin', cache: 'no-store' });
        up = r.ok;
      } catch (e) { up = false; }
      if (!up) sawDown = true;
      if (up && (sawDown || Date.now() - t0 > 20000)) break;
      const waited = Math.round((Date.now() - t0) / 1000);
      setText(overlayText, 'Waiting for hashwatt to come back… (' + waited + ' s)');
      if (Date.now() - t0 > 180000) {
        setText(overlayText, 'hashwatt has not come back after 3 minutes. Check the appliance console, then try again.');
        const again = el('button', { type: 'button', class: 'btn btn-primary', text: 'Try again', onclick: () => { overlay.remove(); S.restarting = false; boot(); } });
        box.append(again);
        again.focus();
        return;
      }
      await sleep(1500);
    }
    overlay.remove();
    S.restarting = false;
    closeEvents();
    announce('hashwatt is back.');
    S.csrf = null;
    boot();
  }

  /* ================================================================== ACCOUNT */

  function renderAccount(main) {
    const page = { destroyed: false };

    // Password.
    const cur = el('input', { type: 'password', id: 'password-current', autocomplete: 'current-password', required: true });
    const nw = el('input', { type: 'password', id: 'password-new', autocomplete: 'new-password', required: true, minlength: '10' });
    const nw2 = el('input', { type: 'password', id: 'password-new2', autocomplete: 'new-password', required: true, minlength: '10' });
    const pwSubmit = el('button', { type: 'submit', id: 'password-submit', class: 'btn btn-primary', text: 'Change password' });
    const pwMsg = msgBox('password-msg');
    const pwForm = el('form', { id: 'password-form', novalidate: true },
      el('input', { type: 'text', autocomplete: 'username', value: S.user || 'admin', hidden: true, 'aria-hidden': 'true', tabindex: '-1', readOnly: true }),
      el('div', { class: 'form-grid single' },
        field('Current password', cur), field('New password', nw, 'At least 10 characters.'), field('Repeat new password', nw2)),
      el('div', { class: 'form-actions' }, pwSubmit), pwMsg);
    pwForm.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(pwSubmit, async () => {
        [cur, nw, nw2].forEach((i) => i.removeAttribute('aria-invalid'));
        if (!cur.value) { cur.setAttribute('aria-invalid', 'true'); cur.focus(); return setMsg(pwMsg, 'error', 'Enter the current password.'); }
        if (nw.value.length < 10) { nw.setAttribute('aria-invalid', 'true'); nw.focus(); return setMsg(pwMsg, 'error', 'The new password must have at least 10 characters.'); }
        if (nw.value !== nw2.value) { nw2.setAttribute('aria-invalid', 'true'); nw2.focus(); return setMsg(pwMsg, 'error', 'The two new passwords differ.'); }
        try {
          await api('POST', '/api/v1/account/password', { current: cur.value, new: nw.value });
          pwForm.reset();
          setMsg(pwMsg, 'ok', 'Password changed.');
        } catch (err) { showError(pwMsg, err); }
      });
    });

    // Tokens.
    const body = el('tbody');
    const listMsg = msgBox('tokens-msg');
    const table = el('table', { id: 'tokens-table', class: 'stack' },
      el('caption', { class: 'sr-only', text: 'API tokens' }),
      el('thead', null, el('tr', null, ['Name', 'Scope', 'Created', 'Actions'].map((h) => el('th', { scope: 'col', text: h })))),
      body);
    const name = el('input', { type: 'text', id: 'token-name', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: '64', placeholder: 'e.g. home-automation' });
    const scope = el('select', { id: 'token-scope' },
      el('option', { value: 'read', text: 'read — can only read' }),
      el('option', { value: 'admin', text: 'admin — can change settings' }));
    const create = el('button', { type: 'submit', id: 'token-create', class: 'btn btn-primary', text: 'Create token' });
    const tokMsg = msgBox('token-msg');
    const tokenNew = el('code', { id: 'token-new' });
    const copy = el('button', { type: 'button', id: 'token-copy', class: 'btn btn-small', text: 'Copy' });
    const copyMsg = el('span', { class: 'small', role: 'status', 'aria-live': 'polite' });
    const tokenBoxTitle = el('p', { style: 'margin:0 0 6px;font-weight:600' });
    const tokenBox = el('div', { class: 'token-box', id: 'token-new-box', hidden: true },
      tokenBoxTitle,
      el('div', { class: 'token-line' }, tokenNew, copy, copyMsg),
      el('p', { class: 'small muted', style: 'margin:8px 0 0', text: 'Copy it now: it will not be shown again. Use it as “Authorization: Bearer <token>”.' }));
    const tokForm = el('form', { id: 'token-form', novalidate: true },
      el('div', { class: 'form-grid' }, field('Name', name), field('Scope', scope)),
      el('div', { class: 'form-actions' }, create), tokMsg, tokenBox);

    copy.addEventListener('click', async () => {
      const t = tokenNew.textContent;
      let ok = false;
      try { if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(t); ok = true; } } catch (e) { ok = false; }
      if (!ok) {
        const ta = el('textarea', { style: 'position:fixed;left:-9999px;top:0', 'aria-hidden': 'true' });
        ta.value = t;
        document.body.append(ta);
        ta.select();
        try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
        ta.remove();
        copy.focus();
      }
      copyMsg.textContent = ok ? 'Copied.' : 'Copy failed: select the token and copy it by hand.';
      if (!ok) { const r = document.createRange(); r.selectNodeContents(tokenNew); const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); }
    });

    tokForm.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(create, async () => {
        name.removeAttribute('aria-invalid');
        if (!name.value.trim()) { name.setAttribute('aria-invalid', 'true'); name.focus(); return setMsg(tokMsg, 'error', 'Give the token a name.'); }
        setMsg(tokMsg, '', '');
        try {
          const r = await api('POST', '/api/v1/tokens', { name: name.value.trim(), scope: scope.value });
          tokenNew.textContent = (r && r.token) || '';
          tokenBoxTitle.textContent = 'New ' + ((r && r.scope) || scope.value) + ' token “' + ((r && r.name) || name.value.trim()) + '”:';
          copyMsg.textContent = '';
          tokenBox.hidden = false;
          name.value = '';
          await load();
          copy.focus();
        } catch (err) { showError(tokMsg, err); }
      });
    });

    function renderRows(list) {
      if (!list.length) {
        body.replaceChildren(el('tr', null, el('td', { colspan: '4', class: 'empty', text: 'No API tokens.' })));
        return;
      }
      body.replaceChildren(...list.map((t) => {
        const rv = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Revoke', 'aria-label': 'Revoke token ' + t.name });
        rv.addEventListener('click', () => {
          if (!window.confirm('Revoke the token ' + t.name + '? Scripts using it stop working.')) return;
          busy(rv, async () => {
            try {
              await api('DELETE', '/api/v1/tokens/' + encodeURIComponent(t.id));
              setMsg(listMsg, 'ok', 'Revoked ' + t.name + '.');
              await load();
              name.focus();
            } catch (e) { showError(listMsg, e); }
          });
        });
        return el('tr', { dataset: { tokenId: String(t.id) } },
          el('th', { scope: 'row', text: t.name }),
          el('td', null, badge(t.scope, t.scope === 'admin' ? 'warn' : 'plain')),
          el('td', { class: 'nowrap', text: fmtDate(t.created_ms) }),
          el('td', { class: 'actions' }, rv));
      }));
      stackLabels(table);
    }
    async function load() {
      try {
        const list = await api('GET', '/api/v1/tokens');
        if (!page.destroyed) renderRows(Array.isArray(list) ? list : []);
      } catch (e) { showError(listMsg, e); }
    }

    append(main,
      pageHead('Account', el('span', { class: 'muted small', text: 'Logged in as ' + (S.user || 'admin') + (S.scope ? ' (' + S.scope + ')' : '') })),
      el('div', { class: 'grid-2' },
        el('section', { class: 'card', 'aria-labelledby': 'pw-title' }, el('h2', { id: 'pw-title', text: 'Change password' }), pwForm),
        el('section', { class: 'card', 'aria-labelledby': 'tok-title' },
          el('h2', { id: 'tok-title', text: 'API tokens' }),
          el('p', { class: 'small muted', text: 'For scripts and home automation. Read tokens can only read; admin tokens can change settings.' }),
          tableWrap('API tokens', table), listMsg,
          el('h3', { style: 'margin-top:16px', text: 'Create a token' }), tokForm)));
    body.append(el('tr', null, el('td', { colspan: '4', class: 'empty', text: 'Loading…' })));
    load();
    page.destroy = () => { page.destroyed = true; };
    return page;
  }

  /* ------------------------------------------------------------------ go */

  function start() {
    initShell();
    boot();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
