// The cull analyst console.
//
// Mention fields are hostile input (feeds carry <script>, onerror=, <iframe>): every
// piece of data reaches the page as a text node (textContent, append(string)) or as an
// attribute the script checks; nothing is ever parsed as HTML. Highlights arrive as
// UTF-8 byte ranges, so the text is encoded to bytes, cut at the ranges and decoded
// piece by piece: indexing the JavaScript (UTF-16) string with byte offsets would cut
// in the wrong places as soon as a mention holds a non-ASCII character.
'use strict';

(() => {
  const TOKEN_KEY = 'cull.token';
  // The facets of the sidebar, in order; a value filters with `filter=facet:value`,
  // which selects exactly the mentions the facet counts under it.
  const FACETS = ['verdict', 'rule', 'culled_rule', 'sentiment', 'domain', 'source', 'author', 'lang', 'channel'];
  const FACET_NAMES = {
    verdict: 'verdict', rule: 'matched rule', culled_rule: 'culled rule', sentiment: 'sentiment',
    domain: 'site', source: 'source', author: 'author', lang: 'language', channel: 'channel',
  };
  const PAGE = 20;
  const SPLITS = ['', 'verdict', 'rule'];
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  // The view of the search page lives in the URL (`#/?q=…&filter=…&since=…`), so a
  // reload, a bookmark or a shared link shows the same view and back/forward step
  // through searches; `search` is always the state the URL says.
  let search = defaultSearch();
  // The number of the latest search: an older one that answers late is dropped.
  let latest = 0;
  // The histogram drawn last, for drag-to-zoom.
  let drawn = null;

  function defaultSearch() {
    return { q: '', sort: 'time', since: '', until: '', split: '', page: 1, filters: [] };
  }

  /** Reads the search state of a `#/?…` hash. */
  function readSearch(hash) {
    const params = new URLSearchParams(hash.replace(/^#\/?\??/, ''));
    const state = defaultSearch();
    state.q = params.get('q') || '';
    state.sort = params.get('sort') === 'relevance' ? 'relevance' : 'time';
    state.since = params.get('since') || '';
    state.until = params.get('until') || '';
    state.split = SPLITS.includes(params.get('split')) ? params.get('split') : '';
    state.page = Math.max(1, parseInt(params.get('page'), 10) || 1);
    state.filters = params.getAll('filter').map((f) => [f.slice(0, f.indexOf(':')), f.slice(f.indexOf(':') + 1)])
      .filter(([facet]) => FACETS.includes(facet));
    return state;
  }

  /** Returns the hash of a search state (defaults left out). */
  function searchHash(state) {
    const params = new URLSearchParams();
    if (state.q) params.set('q', state.q);
    if (state.since) params.set('since', state.since);
    if (state.until) params.set('until', state.until);
    if (state.sort !== 'time') params.set('sort', state.sort);
    if (state.split) params.set('split', state.split);
    if (state.page > 1) params.set('page', String(state.page));
    for (const [facet, value] of state.filters) params.append('filter', `${facet}:${value}`);
    const query = params.toString();
    return query ? `#/?${query}` : '#/';
  }

  /** Shows the search `changes` make to the current one, as a new history entry. */
  function navigate(changes) {
    const next = { ...search, page: 1, ...changes };
    const hash = searchHash(next);
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  /** Returns the API parameters of a search state's filters (what an export takes too). */
  function filterParams(state) {
    const params = new URLSearchParams();
    if (state.q) params.set('q', state.q);
    if (state.since) params.set('since', state.since);
    if (state.until) params.set('until', state.until);
    params.set('sort', state.sort);
    for (const [facet, value] of state.filters) params.append('filter', `${facet}:${value}`);
    return params;
  }

  const $ = (id) => document.getElementById(id);

  /** Returns a new element with classes and children (strings become text nodes). */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attributes) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  }

  /** Returns a link for http(s) URLs only (a javascript: URL must never become one). */
  function safeLink(url, label) {
    try {
      const parsed = new URL(url);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
        const a = el('a', null, label);
        a.href = parsed.href;
        a.rel = 'noopener noreferrer nofollow';
        a.target = '_blank';
        return a;
      }
    } catch (_) {
      // Not a URL: shown as text below.
    }
    return document.createTextNode(label);
  }

  /** Returns `text` with the byte ranges `[start, end)` wrapped in <mark>. */
  function highlighted(text, ranges) {
    const bytes = encoder.encode(text);
    const fragment = document.createDocumentFragment();
    const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [start, end] of sorted) {
      if (start < at || end > bytes.length || start >= end) continue;
      fragment.append(decoder.decode(bytes.subarray(at, start)));
      fragment.append(el('mark', null, decoder.decode(bytes.subarray(start, end))));
      at = end;
    }
    fragment.append(decoder.decode(bytes.subarray(at)));
    return fragment;
  }

  function show(view) {
    for (const id of ['login', 'search-view', 'mention-view', 'rules-view', 'rule-view', 'draft-view']) $(id).hidden = id !== view;
    $('search-form').hidden = view === 'login';
    $('sign-out').hidden = view === 'login';
    $('links').hidden = view === 'login';
  }

  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    show('login');
    $('login-error').hidden = !message;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  /** An API error with its body (`position` locates a query error). */
  class ApiError extends Error {
    constructor(message, body) {
      super(message);
      this.body = body || {};
    }
  }

  /** Calls the API and returns the response; a 401 sends the user back to the token prompt. */
  async function call(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.ok) return response;
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new ApiError(`${response.status} ${response.statusText}`);
    }
    if (response.status === 401) showLogin(body.error);
    throw new ApiError(body.error || `${response.status} ${response.statusText}`, body);
  }

  /** Calls the API; returns the JSON body. */
  async function api(path, options = {}) {
    const response = await call(path, options);
    try {
      return await response.json();
    } catch (_) {
      throw new ApiError(`${response.status} ${response.statusText}: not JSON`);
    }
  }

  /** Puts the search state in the form. */
  function fillForm(state) {
    $('query').value = state.q;
    $('sort').value = state.sort;
    $('split').value = state.split;
    const preset = !state.until && [...$('since').options].some((o) => o.value === state.since && !o.hidden);
    $('since').value = preset ? state.since : 'custom';
  }

  /** Returns the histogram interval that suits a time window. */
  function intervalOf(state) {
    const since = Date.parse(state.since);
    const until = state.until ? Date.parse(state.until) : Date.now();
    if (state.since === '24h' || (!Number.isNaN(since) && until - since <= 3 * 86400e3)) return 'hour';
    return 'day';
  }

  /** Empties the result column: a failed search must not leave the last one's answer up. */
  function clearResults() {
    $('results').replaceChildren();
    $('facets').replaceChildren();
    $('histogram').replaceChildren();
    $('legend').replaceChildren();
    $('pager').hidden = true;
    $('exports').hidden = true;
    drawn = null;
  }

  /** Shows a failed search's error, with a caret under the query where the API locates it. */
  function showSearchError(error) {
    $('status').textContent = '';
    $('error').hidden = false;
    $('error-message').textContent = error.message;
    const position = error.body && error.body.position;
    $('error-caret').hidden = !position;
    if (position) {
      // `position` is a byte range of the query: count the characters before it.
      const bytes = encoder.encode(search.q);
      const column = [...decoder.decode(bytes.subarray(0, position.start))].length;
      const width = Math.max(1, [...decoder.decode(bytes.subarray(position.start, position.end))].length);
      $('error-caret').textContent = `${search.q}\n${' '.repeat(column)}${'^'.repeat(width)}`;
    }
  }

  async function runSearch() {
    const mine = ++latest;
    const state = search;
    const params = filterParams(state);
    params.set('limit', String(PAGE));
    params.set('offset', String((state.page - 1) * PAGE));
    for (const facet of FACETS) params.append('facet', facet);
    params.set('histogram', intervalOf(state));
    if (state.split) params.set('split', state.split);
    $('error').hidden = true;
    $('export-status').textContent = '';
    $('status').textContent = 'Searching…';
    renderFilters(state);
    let found;
    try {
      found = await api(`/api/search?${params}`);
    } catch (error) {
      if (mine !== latest) return;
      clearResults();
      showSearchError(error);
      return;
    }
    if (mine !== latest) return;
    const first = (state.page - 1) * PAGE;
    const shown = first + found.hits.length;
    $('status').textContent =
      `${found.total} mention(s)${found.hits.length ? `, showing ${first + 1}–${shown}` : ''} in ${found.took_ms} ms` +
      (found.timed_out ? ' — the time limit stopped the search: counts are partial' : '');
    renderFacets(found.facets, state);
    renderHistogram(found.histogram, state);
    $('results').replaceChildren(...found.hits.map(renderHit));
    const pages = Math.max(1, Math.ceil(Math.min(found.total, 10000 + PAGE) / PAGE));
    $('pager').hidden = found.total <= PAGE && state.page === 1;
    $('page').textContent = `Page ${state.page} of ${pages}`;
    $('previous').disabled = state.page <= 1;
    $('next').disabled = state.page >= pages;
    $('exports').hidden = found.total === 0;
  }

  /** Returns the first characters of a text, for the link of an untitled hit. */
  function opening(text) {
    const words = text.replace(/\s+/g, ' ').trim();
    return words.length > 90 ? `${words.slice(0, 90)}…` : words;
  }

  function renderHit(hit) {
    const heading = hit.title
      ? highlighted(hit.title.text, hit.title.highlights)
      : opening(hit.text.text) || hit.id;
    const link = el('a', hit.title ? null : 'untitled', heading);
    link.href = `#/mention/${encodeURIComponent(hit.id)}`;
    const meta = el(
      'div',
      'meta',
      el('span', `outcome outcome-${hit.outcome}`, hit.outcome),
      hit.at ? el('span', null, hit.at) : null,
      hit.channel ? el('span', null, hit.channel) : null,
      hit.lang ? el('span', null, hit.lang) : null,
      hit.source ? el('span', null, hit.source) : null,
      hit.author ? el('span', null, hit.author) : null,
      hit.matched.length ? el('span', 'matched', `matched: ${hit.matched.join(', ')}`) : null,
    );
    const culls = hit.culls.map((c) => el('li', null, 'culled by ', el('code', null, c.rule_id), ` — ${c.reason}: `, el('code', null, c.clause)));
    return el(
      'li',
      'hit',
      el('h3', null, link),
      el('p', 'text', highlighted(hit.text.text, hit.text.highlights)),
      meta,
      culls.length ? el('ul', 'culls', ...culls) : null,
    );
  }

  const isFiltered = (state, facet, value) => state.filters.some(([f, v]) => f === facet && v === value);

  function renderFacets(facets, state) {
    const sidebar = $('facets');
    sidebar.replaceChildren();
    for (const facet of FACETS) {
      const counts = facets[facet] || [];
      const list = el('ul');
      for (const { value, count } of counts) {
        const button = el('button', null, el('span', 'value', value), el('span', 'count', String(count)));
        button.type = 'button';
        button.dataset.facet = facet;
        button.dataset.value = value;
        if (isFiltered(state, facet, value)) button.classList.add('active');
        button.addEventListener('click', () => toggleFilter(facet, value));
        list.append(el('li', null, button));
      }
      if (!counts.length) list.append(el('li', 'count', 'none'));
      sidebar.append(el('section', null, el('h2', null, FACET_NAMES[facet]), list));
    }
  }

  /** Shows the filters and the time window of a search as chips that remove them. */
  function renderFilters(state) {
    const chip = (label, remove) => {
      const button = el('button', 'chip', `${label} ✕`);
      button.type = 'button';
      button.addEventListener('click', remove);
      return button;
    };
    const chips = state.filters.map(([facet, value]) => chip(`${FACET_NAMES[facet]}: ${value}`, () => toggleFilter(facet, value)));
    if (state.until || $('since').value === 'custom') {
      const window = chip(`time: ${state.since || '…'} – ${state.until || 'now'}`, () => navigate({ since: '', until: '' }));
      window.classList.add('window');
      chips.push(window);
    }
    $('filters').replaceChildren(...chips);
  }

  function toggleFilter(facet, value) {
    const filters = isFiltered(search, facet, value)
      ? search.filters.filter(([f, v]) => !(f === facet && v === value))
      : [...search.filters, [facet, value]];
    navigate({ filters });
  }

  /** The series colours of a split histogram, by series order (CSS classes). */
  const SERIES_CLASSES = 8;

  /**
   * Draws the histogram: bars (stacked by series with a split), a count axis, time
   * labels, the count of a bucket on hover, and a drag across buckets zooms the time
   * window to them.
   */
  function renderHistogram(histogram, state) {
    const chart = $('histogram');
    chart.replaceChildren();
    $('legend').replaceChildren();
    const buckets = histogram ? histogram.buckets : [];
    const [width, height, left, bottom] = [1000, 140, 44, 20];
    const plot = height - bottom - 6;
    chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
    drawn = null;
    if (!buckets.length) return;
    const max = Math.max(...buckets.map((b) => b.count), 1);
    const step = (width - left) / buckets.length;
    const y = (count) => 6 + plot - (count / max) * plot;
    const names = [];
    if (state.split) {
      for (const bucket of buckets) for (const name of Object.keys(bucket.series || {})) if (!names.includes(name)) names.push(name);
      // Verdicts in their own order (matched green, culled orange, unmatched grey), rules by name.
      const rank = (name) => ['matched', 'culled', 'unmatched'].indexOf(name);
      names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    }
    const axis = (attributes, text) => {
      const node = svg('text', { class: 'axis', ...attributes });
      node.textContent = text;
      chart.append(node);
    };
    chart.append(svg('line', { class: 'axis-line', x1: left, y1: 6 + plot, x2: width, y2: 6 + plot }));
    chart.append(svg('line', { class: 'axis-line', x1: left, y1: 6, x2: left, y2: 6 + plot }));
    axis({ x: left - 4, y: 12, 'text-anchor': 'end' }, String(max));
    axis({ x: left - 4, y: 6 + plot, 'text-anchor': 'end' }, '0');
    const ticks = Math.min(buckets.length, 6);
    for (let t = 0; t < ticks; t += 1) {
      const i = Math.round((t * (buckets.length - 1)) / Math.max(ticks - 1, 1));
      const label = histogram.interval === 'hour' ? buckets[i].start.slice(5, 16).replace('T', ' ') : buckets[i].start.slice(0, 10);
      axis({ x: left + i * step + step / 2, y: height - 4, 'text-anchor': 'middle' }, label);
    }
    buckets.forEach((bucket, i) => {
      const x = left + i * step + step * 0.1;
      const barWidth = Math.max(step * 0.8, 0.5);
      const group = svg('g', { class: 'bucket', 'data-index': i });
      const parts = state.split ? names.map((name, n) => [name, (bucket.series || {})[name] || 0, n]) : [[null, bucket.count, 0]];
      let base = 0;
      for (const [name, count, n] of parts) {
        if (!count) continue;
        const top = y(base + count);
        group.append(svg('rect', {
          class: `bar${name === null ? '' : ` series series-${n % SERIES_CLASSES}`}`,
          x, y: top, width: barWidth, height: Math.max(y(base) - top, 1),
        }));
        base += count;
      }
      // The whole column answers the hover, so an empty bucket shows its 0 too.
      const hit = svg('rect', { class: 'hover', x: left + i * step, y: 6, width: step, height: plot });
      const title = svg('title', {});
      const detail = parts.filter(([name, count]) => name !== null && count).map(([name, count]) => `${name} ${count}`);
      title.textContent = `${bucket.start.slice(0, 16).replace('T', ' ')}: ${bucket.count}${detail.length ? ` (${detail.join(', ')})` : ''}`;
      hit.append(title);
      hit.addEventListener('mouseenter', () => { $('histogram-tip').textContent = title.textContent; });
      group.append(hit);
      chart.append(group);
    });
    names.forEach((name, n) => {
      $('legend').append(el('span', `key series-${n % SERIES_CLASSES}`, name));
    });
    const seconds = { hour: 3600, day: 86400, week: 7 * 86400 }[histogram.interval];
    drawn = { buckets, left, step, seconds };
  }

  /** Returns the bucket index under a mouse event on the histogram (clamped). */
  function bucketAt(event) {
    const box = $('histogram').getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * 1000;
    return Math.min(drawn.buckets.length - 1, Math.max(0, Math.floor((x - drawn.left) / drawn.step)));
  }

  /** Drag-to-zoom: a drag across buckets (or a click on one) makes them the time window. */
  function setUpZoom() {
    const chart = $('histogram');
    let from = null;
    const selection = () => chart.querySelector('rect.selection');
    chart.addEventListener('mousedown', (event) => {
      if (!drawn) return;
      event.preventDefault();
      from = bucketAt(event);
      const rect = svg('rect', { class: 'selection', x: drawn.left + from * drawn.step, y: 0, width: drawn.step, height: 140 });
      chart.append(rect);
    });
    chart.addEventListener('mousemove', (event) => {
      if (from === null || !selection()) return;
      const to = bucketAt(event);
      selection().setAttribute('x', drawn.left + Math.min(from, to) * drawn.step);
      selection().setAttribute('width', (Math.abs(to - from) + 1) * drawn.step);
    });
    window.addEventListener('mouseup', (event) => {
      if (from === null || !drawn) return;
      const to = bucketAt(event);
      const [first, last] = [Math.min(from, to), Math.max(from, to)];
      from = null;
      const since = drawn.buckets[first].start;
      const until = new Date(Date.parse(drawn.buckets[last].start) + drawn.seconds * 1000).toISOString().replace('.000Z', 'Z');
      navigate({ since, until });
    });
  }

  /** Downloads the whole result of the current search (not the page) as `format`. */
  async function exportResult(format) {
    const params = filterParams(search);
    params.set('format', format);
    $('export-status').textContent = 'Exporting…';
    try {
      const response = await call(`/api/export?${params}`);
      const blob = await response.blob();
      const [total, exported] = ['x-cull-total', 'x-cull-exported'].map((h) => response.headers.get(h));
      const link = el('a');
      link.href = URL.createObjectURL(blob);
      link.download = `cull-mentions.${format}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      $('export-status').textContent = exported === total
        ? `Exported ${exported} mention(s) as ${format.toUpperCase()}.`
        : `Exported ${exported} of ${total} mention(s) as ${format.toUpperCase()}: an export holds at most 10,000 (and 64 MiB).`;
    } catch (error) {
      $('export-status').textContent = `Export failed: ${error.message}`;
    }
  }

  /** Returns the spans of one field from the rules that matched. */
  function spansOf(explanations, field) {
    return explanations.flatMap((e) => e.spans.filter((s) => s.field === field).map((s) => [s.start, s.end]));
  }

  function yesNo(ok, yes, no) {
    return el('span', ok ? 'yes' : 'no', ok ? yes : no);
  }

  function renderWhy(explanation) {
    let heading;
    if (explanation.outcome === 'matched') heading = 'Why matched';
    else if (explanation.outcome === 'culled') heading = `Why culled: by ${explanation.cull.reason}`;
    else heading = 'The rule does not match now (it changed since the verdict)';
    const box = el(
      'section',
      `why outcome-${explanation.outcome}`,
      el('h3', null, `${heading} — ${explanation.rule_name} (`, el('code', null, explanation.rule_id), ')'),
    );
    if (explanation.cull) {
      box.append(el('p', null, `Culled by ${explanation.cull.reason}: `, el('code', null, explanation.cull.clause)));
    }
    const clauses = el('ul');
    for (const clause of explanation.clauses) {
      const holds = clause.negated ? !clause.matched : clause.matched;
      clauses.append(
        el(
          'li',
          null,
          yesNo(holds, '✓ ', '✗ '),
          el('code', null, clause.source),
          clause.negated
            ? ` — must not match; ${clause.matched ? 'it matches' : 'it does not'}`
            : ` — ${clause.matched ? 'matches' : 'does not match'}`,
        ),
      );
    }
    box.append(el('p', null, 'Query clauses:'), clauses);
    if (explanation.masks.length) {
      const masks = el('ul');
      for (const mask of explanation.masks) {
        masks.append(el('li', null, el('code', null, mask.source), mask.matched ? ' — occurs: hidden from the query' : ' — does not occur'));
      }
      box.append(el('p', null, 'Masks:'), masks);
    }
    if (explanation.excludes.length) {
      const excludes = el('ul');
      for (const exclude of explanation.excludes) {
        excludes.append(el('li', null, el('code', null, exclude.source), exclude.matched ? ' — matches: culls' : ' — does not match'));
      }
      box.append(el('p', null, 'Excludes:'), excludes);
    }
    const prefilter = explanation.anchors
      ? `Prefilter: ${explanation.candidate ? 'candidate' : 'not a candidate'} (anchors: ${explanation.anchors.join('; ')})`
      : 'Prefilter: no anchor words; checked against every mention';
    box.append(el('p', 'meta', prefilter));
    return box;
  }

  /** Returns a table with a header row and one row per item (cells become text). */
  function table(className, headers, rows) {
    return el(
      'table',
      className,
      el('thead', null, el('tr', null, ...headers.map((h) => el('th', null, h)))),
      el('tbody', null, ...rows.map((cells) => el('tr', null, ...cells.map((c) => el('td', null, c instanceof Node ? c : String(c ?? '')))))),
    );
  }

  /**
   * Returns the account of one ticket about the mention: its place in the queue, why
   * it scores what it does, its SLA and the incident it is part of (`tickets` are all
   * the mention's, where that incident may be).
   */
  function renderTicket(ticket, tickets) {
    const fields = el('dl', 'fields');
    const field = (name, value) => {
      if (value !== undefined && value !== null && value !== '') fields.append(el('dt', null, name), el('dd', null, value));
    };
    field('kind', ticket.kind);
    field('queue', ticket.overflow_from ? `${ticket.queue} (overflow from ${ticket.overflow_from})` : ticket.queue);
    field('priority', `${ticket.priority}, score ${ticket.priority_score}`);
    field('rule', `${ticket.rule.name} (${ticket.rule.id})`);
    field('arrival_at', ticket.arrival_at);
    field('rank offset', `${ticket.rank_offset_minutes} minutes`);
    field('SLA due at', ticket.sla_due_at);
    field('SLA policy', ticket.sla_policy);
    field('SLA clock', ticket.sla_clock);
    field('SLA target', `${ticket.sla_target_minutes} minutes`);
    field('late on arrival', ticket.late_on_arrival ? 'yes' : 'no');
    field('mentions', String(ticket.mention_count));
    if (ticket.incident_id) {
      const incident = tickets.find((t) => t.kind === 'incident' && t.ticket_id === ticket.incident_id);
      const id = el('code', null, ticket.incident_id);
      if (incident) {
        const link = el('a', 'incident', id);
        link.href = `#/mention/${encodeURIComponent(incident.mention.id)}`;
        field('incident', el('span', null, link, ` — ${incident.rule.name}`));
      } else {
        field('incident', id);
      }
    }
    const box = el(
      'section',
      `ticket kind-${ticket.kind}`,
      el('h3', null, el('code', null, ticket.ticket_id), ` revision ${ticket.revision}`),
      fields,
    );
    if (ticket.factors.length) {
      const rows = ticket.factors.map((f) => [f.factor, f.value, f.points, f.detail]);
      box.append(table('factors', ['factor', 'value', 'points', 'detail'], rows));
    }
    return box;
  }

  async function showMention(id) {
    show('mention-view');
    const article = $('mention');
    article.replaceChildren(el('p', null, 'Loading…'));
    $('mention-error').hidden = true;
    let found;
    try {
      found = await api(`/api/mentions/${encodeURIComponent(id)}`);
    } catch (error) {
      article.replaceChildren();
      $('mention-error').hidden = false;
      $('mention-error').textContent = error.message;
      return;
    }
    const { verdict, explanations, tickets } = found;
    const mention = verdict.mention;
    const matched = explanations.filter((e) => e.outcome === 'matched');
    const outcome = verdict.matched.length ? 'matched' : verdict.culled.length ? 'culled' : 'unmatched';
    const fields = el('dl', 'fields');
    const field = (name, value) => {
      if (value !== undefined && value !== null && value !== '') fields.append(el('dt', null, name), el('dd', null, value));
    };
    field('id', mention.id);
    field('url', mention.url ? safeLink(mention.url, mention.url) : null);
    for (const name of ['author', 'source', 'channel', 'lang', 'client', 'published_at', 'fetched_at']) field(name, mention[name]);
    for (const [key, value] of Object.entries(mention.meta || {})) field(`meta.${key}`, value);
    field('rule set', `${verdict.ruleset_version} (explained with ${found.ruleset_version})`);
    article.replaceChildren(
      el('h2', 'title', mention.title ? highlighted(mention.title, spansOf(matched, 'title')) : mention.id),
      el('div', 'meta', el('span', `outcome outcome-${outcome}`, outcome)),
      el('p', 'body', highlighted(mention.text, spansOf(matched, 'text'))),
      fields,
      el('h2', null, 'Why'),
    );
    if (!explanations.length && !found.unexplained.length) {
      article.append(el('p', 'why-none', "No rule's query matched this mention."));
    }
    article.append(...explanations.map(renderWhy));
    if (found.unexplained.length) {
      article.append(el('p', 'meta', `Rules no longer loaded, not explained: ${found.unexplained.join(', ')}`));
    }
    article.append(el('h2', null, 'Tickets'));
    if (!tickets.length) article.append(el('p', 'tickets-none', 'No ticket about this mention (yet).'));
    article.append(...tickets.map((ticket) => renderTicket(ticket, tickets)));
  }


  const percent = (value) => (value === null || value === undefined ? '–' : `${Math.round(value * 100)}%`);
  const signed = (value) => (value === null || value === undefined ? '–' : `${value >= 0 ? '+' : ''}${Math.round(value * 100)}`);
  const number = (value, digits) => (value === null || value === undefined ? '–' : value.toFixed(digits));

  /** Returns the route of a rule's page: `#/rules/<id>` with its client, if any. */
  function ruleHref(report) {
    const client = report.client ? `?client=${encodeURIComponent(report.client)}` : '';
    return `#/rules/${encodeURIComponent(report.rule_id)}${client}`;
  }

  const STAT_HEADERS = ['Rule', 'Matches', 'Culled', 'Tickets', 'Feedback', 'Precision', 'Trend', 'µs/mention', 'Top cull'];

  function statRow(report) {
    const name = report.client ? `${report.client}/${report.rule_id}` : report.rule_id;
    const link = el('a', null, name);
    link.href = ruleHref(report);
    const top = report.culls.length ? `${report.culls[0].clause} (${report.culls[0].count})` : '';
    const precision = el('span', report.below_threshold ? 'below' : null, percent(report.precision));
    if (report.below_threshold) precision.title = `under its threshold of ${percent(report.threshold)}`;
    return [link, String(report.matches), String(report.culled), String(report.tickets), String(report.feedback),
      precision, signed(report.trend), number(report.verify_micros_per_mention, 2), top];
  }

  async function showRules() {
    show('rules-view');
    $('rules-error').hidden = true;
    try {
      const found = await api(`/api/rules/stats?sort=${encodeURIComponent($('rules-sort').value)}`);
      const rows = found.rules.map(statRow);
      $('rules-table').replaceChildren(rows.length ? table('stats', STAT_HEADERS, rows) : el('p', null, 'No rule has done anything yet.'));
    } catch (error) {
      $('rules-table').replaceChildren();
      $('rules-error').hidden = false;
      $('rules-error').textContent = error.message;
    }
  }

  const KIND = { exclude: 'exclude', mask: 'mask', block_author: 'block author' };

  async function showRule(id, client) {
    show('rule-view');
    $('rule-error').hidden = true;
    const article = $('rule');
    article.replaceChildren(el('p', 'meta', 'Loading…'));
    const params = client ? `?client=${encodeURIComponent(client)}` : '';
    try {
      const [stats, found] = await Promise.all([
        api('/api/rules/stats?sort=precision'),
        api(`/api/rules/${encodeURIComponent(id)}/suggestions${params}`),
      ]);
      const report = stats.rules.find((r) => r.rule_id === id && (r.client || '') === (client || ''));
      article.replaceChildren(el('h1', null, client ? `${client}/${id}` : id));
      if (report) {
        article.append(table('stats', STAT_HEADERS.slice(1, 8), [statRow(report).slice(1, 8)]));
        if (report.culls.length) {
          article.append(el('h2', null, 'Culls by clause'));
          article.append(table('factors', ['Clause', 'Mentions'], report.culls.map((c) => [c.clause, String(c.count)])));
        }
      }
      article.append(el('h2', null, 'Suggestions'));
      article.append(el('p', 'meta', `From ${found.irrelevant} irrelevant and ${found.relevant} relevant labelled mentions` +
        ` (${found.unavailable} no longer indexed); the rule matches ${found.matched} indexed mentions. Each is backtested; nothing is applied.`));
      if (!found.suggestions.length) {
        article.append(el('p', 'suggestions-none', 'No suggestion: too little feedback, or nothing sets the irrelevant mentions apart.'));
      } else {
        const rows = found.suggestions.map((s) => [KIND[s.kind] || s.kind, el('code', null, s.clause),
          `${s.irrelevant_culled} of ${found.irrelevant}`, `${s.relevant_lost} of ${found.relevant}`, String(s.newly_culled)]);
        article.append(table('suggestions', ['Add', 'Clause', 'Irrelevant culled', 'Relevant lost', 'Mentions culled in all'], rows));
      }
      if (found.draft) {
        article.append(el('h2', null, 'Draft rule'));
        const draft = el('pre', 'draft', found.draft);
        const copy = el('button', null, 'Copy the TOML');
        copy.type = 'button';
        copy.addEventListener('click', () => navigator.clipboard && navigator.clipboard.writeText(found.draft));
        article.append(draft, copy);
      }
    } catch (error) {
      article.replaceChildren();
      $('rule-error').hidden = false;
      $('rule-error').textContent = error.message;
    }
  }

  /** Returns the rule ids of a rule file's text (`id = "…"` lines), for the live rule to compare with. */
  function draftIds(toml) {
    return [...toml.matchAll(/^\s*id\s*=\s*["']([^"']+)["']/gm)].map((m) => m[1]);
  }

  async function loadLiveRule() {
    const id = $('draft-rule-id').value.trim();
    if (!id) return;
    $('draft-error').hidden = true;
    try {
      const found = await api(`/api/rules/${encodeURIComponent(id)}/definition`);
      $('live-toml').value = found.toml;
      if (!$('draft-toml').value.trim()) $('draft-toml').value = found.toml;
    } catch (error) {
      $('live-toml').value = '';
      $('draft-error').hidden = false;
      $('draft-error').textContent = `${error.message} — paste the live rule below, or leave it empty to compare with nothing.`;
    }
  }

  function showDraft() {
    show('draft-view');
    const id = new URLSearchParams(location.hash.split('?')[1] || '').get('rule');
    if (id && id !== $('draft-rule-id').value) {
      $('draft-rule-id').value = id;
      loadLiveRule();
    }
  }

  /** Backtests a rule file: its ids, matched and culled, or nothing for an empty one. */
  async function backtestFile(toml, since) {
    if (!toml.trim()) return { rules: [], warnings: [] };
    const body = JSON.stringify({ rules: toml, since: since || undefined, samples: 100 });
    return api('/api/backtest', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  }

  /** Returns one side of the diff: the mentions in `ids`, as links with the sample text where there is one. */
  function diffList(className, heading, ids, samples) {
    const items = ids.slice(0, 20).map((id) => {
      const link = el('a', null, id);
      link.href = `#/mention/${encodeURIComponent(id)}`;
      const sample = samples.get(id);
      return el('li', null, link, sample ? ` — ${opening(sample)}` : null);
    });
    const more = ids.length > 20 ? el('p', 'meta', `and ${ids.length - 20} more`) : null;
    return el('section', className, el('h3', null, `${heading}: ${ids.length}`), el('ul', null, ...items), more);
  }

  async function runDraft() {
    $('draft-error').hidden = true;
    $('draft-diff').replaceChildren(el('p', 'meta', 'Backtesting…'));
    const since = $('draft-since').value.trim();
    let draft;
    let live;
    try {
      [draft, live] = await Promise.all([backtestFile($('draft-toml').value, since), backtestFile($('live-toml').value, since)]);
    } catch (error) {
      $('draft-diff').replaceChildren();
      $('draft-error').hidden = false;
      const located = (error.body.rule_errors || []).map((e) => e.message);
      $('draft-error').textContent = [error.message, ...located].join('\n');
      return;
    }
    const sections = [];
    for (const rule of draft.rules) {
      const before = live.rules.find((r) => r.rule_id === rule.rule_id);
      const was = new Set(before ? before.matched_ids : []);
      const is = new Set(rule.matched_ids);
      const samples = new Map();
      for (const sample of [...rule.matched_samples, ...(before ? before.matched_samples : [])]) {
        samples.set(sample.id, sample.title || sample.text || '');
      }
      const gained = rule.matched_ids.filter((id) => !was.has(id));
      const lost = before ? before.matched_ids.filter((id) => !is.has(id)) : [];
      sections.push(el(
        'article',
        'rule-diff',
        el('h2', null, el('code', null, rule.rule_id), before ? ' against the live rule' : ' (no live rule of this id: all of it is new)'),
        el('p', 'meta', `Draft: ${rule.matched} matched, ${rule.culled} culled. Live: ${before ? `${before.matched} matched, ${before.culled} culled` : '–'}.`),
        diffList('gained', 'Newly matched', gained, samples),
        diffList('lost', 'No longer matched', lost, samples),
      ));
    }
    const warnings = draft.warnings.map((w) => el('p', 'meta', `warning: ${w.message}`));
    $('draft-diff').replaceChildren(...warnings, ...sections);
  }

  function setUpDraft() {
    $('draft-load').addEventListener('click', loadLiveRule);
    $('draft-toml').addEventListener('change', () => {
      const [id] = draftIds($('draft-toml').value);
      if (id && !$('draft-rule-id').value) $('draft-rule-id').value = id;
    });
    $('draft-form').addEventListener('submit', (event) => {
      event.preventDefault();
      runDraft();
    });
    $('draft-copy').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('draft-toml').value);
        $('draft-copy').textContent = 'Copied';
      } catch (_) {
        // No clipboard (not a secure context): select the text for the user to copy.
        $('draft-toml').select();
        $('draft-copy').textContent = 'Selected: press Ctrl+C';
      }
    });
  }

  function route() {
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      showLogin('');
      return;
    }
    const hash = location.hash;
    if (hash.startsWith('#/mention/')) {
      showMention(decodeURIComponent(hash.slice('#/mention/'.length)));
    } else if (hash === '#/rules') {
      showRules();
    } else if (hash.startsWith('#/rules/')) {
      const [path, query] = hash.slice('#/rules/'.length).split('?');
      showRule(decodeURIComponent(path), new URLSearchParams(query || '').get('client'));
    } else if (hash.startsWith('#/draft')) {
      showDraft();
    } else {
      search = readSearch(hash);
      fillForm(search);
      show('search-view');
      runSearch();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token').value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('token').value = '';
      route();
    });
    $('search-form').addEventListener('submit', (event) => {
      event.preventDefault();
      navigate({ q: $('query').value });
    });
    $('sort').addEventListener('change', () => navigate({ sort: $('sort').value }));
    $('split').addEventListener('change', () => navigate({ split: $('split').value, page: search.page }));
    $('since').addEventListener('change', () => {
      if ($('since').value !== 'custom') navigate({ since: $('since').value, until: '' });
    });
    $('previous').addEventListener('click', () => navigate({ page: search.page - 1 }));
    $('next').addEventListener('click', () => navigate({ page: search.page + 1 }));
    $('export-csv').addEventListener('click', () => exportResult('csv'));
    $('export-jsonl').addEventListener('click', () => exportResult('jsonl'));
    $('rules-sort').addEventListener('change', showRules);
    $('sign-out').addEventListener('click', () => {
      clearResults();
      showLogin('');
    });
    setUpZoom();
    setUpDraft();
    window.addEventListener('hashchange', route);
    route();
  });
})();
