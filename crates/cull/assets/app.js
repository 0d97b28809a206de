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
  const FACETS = ['verdict', 'rule', 'channel', 'lang'];
  const PAGE = 20;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  const state = {
    query: '',
    sort: 'time',
    since: '',
    filters: { verdict: [], rule: [], channel: [], lang: [] },
    offset: 0,
    // The number of the latest search: an older one that answers late is dropped.
    latest: 0,
  };

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
    for (const id of ['login', 'search-view', 'mention-view', 'rules-view', 'rule-view']) $(id).hidden = id !== view;
    $('search-form').hidden = view === 'login';
    $('sign-out').hidden = view === 'login';
    $('rules-link').hidden = view === 'login';
  }

  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    show('login');
    $('login-error').hidden = !message;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  class ApiError extends Error {}

  /** Calls the API; a 401 sends the user back to the token prompt. */
  async function api(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new ApiError(`${response.status} ${response.statusText}`);
    }
    if (response.status === 401) {
      showLogin(body.error);
      throw new ApiError(body.error);
    }
    if (!response.ok) throw new ApiError(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  function searchParams() {
    const params = new URLSearchParams();
    if (state.query) params.set('q', state.query);
    if (state.since) params.set('since', state.since);
    params.set('sort', state.sort);
    params.set('limit', String(PAGE));
    params.set('offset', String(state.offset));
    for (const [key, values] of Object.entries(state.filters)) {
      for (const value of values) params.append(key, value);
    }
    return params;
  }

  async function search(append) {
    state.offset = append ? state.offset + PAGE : 0;
    const mine = ++state.latest;
    const params = searchParams();
    for (const facet of FACETS) params.append('facet', facet);
    params.set('histogram', state.since === '24h' ? 'hour' : 'day');
    $('error').hidden = true;
    $('status').textContent = 'Searching…';
    let found;
    try {
      found = await api(`/api/search?${params}`);
    } catch (error) {
      if (mine !== state.latest) return;
      $('status').textContent = '';
      $('error').hidden = false;
      $('error').textContent = error.message;
      return;
    }
    if (mine !== state.latest) return;
    const shown = state.offset + found.hits.length;
    $('status').textContent =
      `${found.total} mention(s)${found.total ? `, showing 1–${shown}` : ''} in ${found.took_ms} ms` +
      (found.timed_out ? ' — the time limit stopped the search: counts are partial' : '');
    if (!append) {
      renderFacets(found.facets);
      renderFilters();
      renderHistogram(found.histogram);
      $('results').replaceChildren();
    }
    $('results').append(...found.hits.map(renderHit));
    $('more').hidden = shown >= found.total;
  }

  function renderHit(hit) {
    const link = el('a', null, hit.title ? highlighted(hit.title.text, hit.title.highlights) : hit.id);
    link.href = `#/mention/${encodeURIComponent(hit.id)}`;
    const meta = el(
      'div',
      'meta',
      el('span', `outcome outcome-${hit.outcome}`, hit.outcome),
      hit.at ? el('span', null, hit.at) : null,
      hit.channel ? el('span', null, hit.channel) : null,
      hit.lang ? el('span', null, hit.lang) : null,
      hit.source ? el('span', null, hit.source) : null,
      hit.matched.length ? el('span', null, `matched: ${hit.matched.join(', ')}`) : null,
      hit.culled.length ? el('span', null, `culled: ${hit.culled.join(', ')}`) : null,
    );
    return el('li', 'hit', el('h3', null, link), el('p', 'text', highlighted(hit.text.text, hit.text.highlights)), meta);
  }

  function renderFacets(facets) {
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
        if (state.filters[facet].includes(value)) button.classList.add('active');
        button.addEventListener('click', () => toggleFilter(facet, value));
        list.append(el('li', null, button));
      }
      if (!counts.length) list.append(el('li', 'count', 'none'));
      sidebar.append(el('section', null, el('h2', null, facet), list));
    }
  }

  function renderFilters() {
    const chips = [];
    for (const [facet, values] of Object.entries(state.filters)) {
      for (const value of values) {
        const chip = el('button', 'chip', `${facet}: ${value} ✕`);
        chip.type = 'button';
        chip.addEventListener('click', () => toggleFilter(facet, value));
        chips.push(chip);
      }
    }
    $('filters').replaceChildren(...chips);
  }

  function toggleFilter(facet, value) {
    const values = state.filters[facet];
    const at = values.indexOf(value);
    if (at >= 0) values.splice(at, 1);
    else values.push(value);
    search(false);
  }

  function renderHistogram(histogram) {
    const chart = $('histogram');
    chart.replaceChildren();
    const buckets = histogram ? histogram.buckets : [];
    const width = 1000;
    const height = 90;
    const plot = height - 16;
    chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
    chart.setAttribute('preserveAspectRatio', 'none');
    if (!buckets.length) return;
    const max = Math.max(...buckets.map((b) => b.count), 1);
    const step = width / buckets.length;
    buckets.forEach((bucket, i) => {
      const barHeight = Math.max((bucket.count / max) * plot, bucket.count ? 1 : 0);
      const bar = svg('rect', {
        class: 'bar',
        x: i * step + step * 0.1,
        y: plot - barHeight,
        width: Math.max(step * 0.8, 0.5),
        height: barHeight,
      });
      const title = svg('title', {});
      title.textContent = `${bucket.start.slice(0, 16).replace('T', ' ')}: ${bucket.count}`;
      bar.append(title);
      chart.append(bar);
    });
    const label = (x, anchor, text) => {
      const node = svg('text', { class: 'axis', x, y: height - 3, 'text-anchor': anchor });
      node.textContent = text;
      chart.append(node);
    };
    label(2, 'start', buckets[0].start.slice(0, 10));
    if (buckets.length > 1) label(width - 2, 'end', buckets[buckets.length - 1].start.slice(0, 10));
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
    } else {
      const first = $('search-view').hidden && !$('results').childElementCount;
      show('search-view');
      if (first) search(false);
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
      state.query = $('query').value;
      state.sort = $('sort').value;
      state.since = $('since').value;
      if (location.hash.startsWith('#/mention/')) location.hash = '#/';
      show('search-view');
      search(false);
    });
    $('more').addEventListener('click', () => search(true));
    $('rules-sort').addEventListener('change', showRules);
    $('sign-out').addEventListener('click', () => {
      $('results').replaceChildren();
      showLogin('');
    });
    window.addEventListener('hashchange', route);
    route();
  });
})();
