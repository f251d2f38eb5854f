// Pictures of a pool's progress and of the organization's months: hand-drawn SVG (three simple
// charts do not earn a library), each an image with a spoken summary and, under it, a
// "Show as table" disclosure holding a real table of the same numbers.
//
// Why a <details> rather than a visually hidden table: the summary already says the totals to
// a screen reader; the table is one keypress away for anyone who wants the figures, sighted
// keyboard and magnifier users included, and it does not make every reader wade through
// hundreds of rows of days on their way down the page.
//
// Colours are CSS classes (console.css), never inline styles (the console's CSP forbids them),
// and each series also differs by pattern: solid for redeemed, hatched for launched.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
let serial = 0;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const fmt = (n) => Number(n).toLocaleString();
const plural = (n, one, many = `${one}s`) => `${fmt(n)} ${n === 1 ? one : many}`;

/** A round step for the value axis: 1, 2 or 5 times a power of ten, giving about 4 lines. */
function niceMax(max) {
  if (max <= 4) return { top: Math.max(max, 1), step: 1 };
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

/** The hatch that marks the launched series, so it reads without colour too. */
function hatch(id) {
  return s('pattern', { id, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
    s('rect', { width: 6, height: 6, class: 'chart-launched-bg' }),
    s('rect', { width: 3, height: 6, class: 'chart-launched' }));
}

/** The image: role img, named by its summary, with <title> and <desc>. */
function svgImage(width, height, title, summary) {
  const id = `chart-${++serial}`;
  return s('svg', { role: 'img', 'aria-label': `${title}. ${summary}`, width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', focusable: 'false' },
    s('title', {}, title), s('desc', {}, summary));
}

/** The disclosure with the table: caption, a header row, one row per bucket. */
function tableDisclosure(id, caption, heads, rows) {
  return h('details', { class: 'chart-table', id: `${id}-details` },
    h('summary', { id: `${id}-toggle` }, 'Show as table'),
    h('div', { class: 'table-wrap' }, h('table', { id: `${id}-table` },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, heads.map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((v, i) => (i ? h('td', { class: 'num' }, typeof v === 'number' ? fmt(v) : v) : h('th', { scope: 'row' }, v)))))))));
}

/**
 * Draws into `box` at the box's own width and again whenever that width changes, so text stays
 * at its real size at 375 px instead of shrinking with a scaled viewBox.
 */
function responsive(box, draw) {
  let last = -1;
  const paint = () => {
    const w = Math.floor(box.clientWidth);
    if (w > 0 && w !== last) { last = w; box.replaceChildren(draw(w)); }
  };
  new ResizeObserver(paint).observe(box);
  return box;
}

/** A legend that names each series with its swatch (colour and pattern). */
function legend(items) {
  return h('ul', { class: 'chart-legend', 'aria-hidden': 'true' }, items.map(([cls, label]) => h('li', {},
    s('svg', { width: 14, height: 14, class: 'swatch' }, cls === 'chart-launched'
      ? [s('rect', { width: 14, height: 14, class: 'chart-launched-bg' }), [-7, 0, 7].map((o) => s('line', { x1: o, y1: 14, x2: o + 14, y2: 0, class: 'chart-stripe' })), s('rect', { x: 0.5, y: 0.5, width: 13, height: 13, class: 'chart-hatched', fill: 'none' })]
      : s('rect', { width: 14, height: 14, class: cls })), label)));
}

/**
 * Buckets of days: days while they fit (60 or fewer), else weeks starting Monday (up to 420
 * days), else months. Bars stay wider than a few pixels at 375 px, and the table stays short.
 */
export function bucketDays(days) {
  if (days.length <= 60) return { unit: 'day', buckets: days.map((d) => ({ label: d.date, redeemed: d.redeemed, launched: d.launched })) };
  const unit = days.length <= 420 ? 'week' : 'month';
  const out = [];
  for (const d of days) {
    let key = d.date.slice(0, 7);
    if (unit === 'week') {
      const t = new Date(`${d.date}T00:00:00Z`);
      t.setUTCDate(t.getUTCDate() - ((t.getUTCDay() + 6) % 7));
      key = `week of ${t.toISOString().slice(0, 10)}`;
    }
    const last = out[out.length - 1];
    if (last && last.label === key) { last.redeemed += d.redeemed; last.launched += d.launched; }
    else out.push({ label: key, redeemed: d.redeemed, launched: d.launched });
  }
  return { unit, buckets: out };
}

/**
 * Grouped bars over time: `series` is [[field, label, class]], `buckets` [{label, ...fields}].
 * Axis labels are thinned to what fits, at least 64 px apart.
 */
function barsOverTime(width, title, summary, buckets, series, shortLabel) {
  const height = 220, left = 40, right = 8, top = 10, bottom = 28;
  const svg = svgImage(width, height, title, summary);
  const pid = `hatch-${serial}`;
  svg.append(s('defs', {}, hatch(pid)));
  const plotW = Math.max(1, width - left - right), plotH = height - top - bottom;
  const max = Math.max(0, ...buckets.flatMap((b) => series.map(([f]) => b[f])));
  const { top: yTop, step } = niceMax(max);
  const y = (v) => top + plotH - (v / yTop) * plotH;
  for (let v = 0; v <= yTop; v += step) {
    svg.append(s('line', { x1: left, x2: width - right, y1: y(v), y2: y(v), class: v ? 'chart-grid' : 'chart-axis' }),
      s('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'chart-text' }, fmt(v)));
  }
  const slot = plotW / Math.max(1, buckets.length);
  const gap = slot > 6 ? Math.min(slot * 0.25, 8) : 0;
  const barW = Math.max(0.5, (slot - gap) / series.length);
  const every = Math.max(1, Math.ceil(72 / slot));
  buckets.forEach((b, i) => {
    const x0 = left + i * slot + gap / 2;
    series.forEach(([f, , cls], j) => {
      const hgt = (b[f] / yTop) * plotH;
      if (hgt > 0) svg.append(s('rect', { x: x0 + j * barW, y: y(b[f]), width: barW, height: hgt, class: cls === 'chart-launched' ? 'chart-hatched' : cls, fill: cls === 'chart-launched' ? `url(#${pid})` : null }));
    });
    // Counted back from the last bucket, so today (or this month) always has its label; a
    // label is centred under its bar, kept inside the image at either edge.
    if ((buckets.length - 1 - i) % every === 0) {
      const cx = left + i * slot + slot / 2;
      const anchor = cx + 32 > width ? 'end' : cx - 32 < 0 ? 'start' : 'middle';
      svg.append(s('text', { x: anchor === 'end' ? width - 1 : anchor === 'start' ? 1 : cx, y: height - 8, 'text-anchor': anchor, class: 'chart-text' }, shortLabel(b.label)));
    }
  });
  return svg;
}

const shortDay = (label) => {
  const m = label.match(/(\d{4})-(\d{2})(?:-(\d{2}))?$/);
  if (!m) return label;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, m[3] ? +m[3] : 1));
  return d.toLocaleDateString(undefined, m[3] ? { day: 'numeric', month: 'short', timeZone: 'UTC' } : { month: 'short', year: '2-digit', timeZone: 'UTC' });
};

/** Redemptions and launches per day (or week, or month) since the pool opened. */
export function perDayChart(days) {
  const { unit, buckets } = bucketDays(days);
  const redeemed = days.reduce((a, d) => a + d.redeemed, 0);
  const launched = days.reduce((a, d) => a + d.launched, 0);
  const busiest = buckets.reduce((a, b) => (b.redeemed > a.redeemed ? b : a), buckets[0]);
  const title = `Redemptions and launches per ${unit}`;
  const summary = `${plural(redeemed, 'redemption')} and ${plural(launched, 'launch', 'launches')} over ${plural(days.length, 'day')}, from ${days[0].date} to ${days[days.length - 1].date} (UTC)`
    + (redeemed ? `; most redemptions in one ${unit}: ${fmt(busiest.redeemed)}, ${unit === 'day' ? 'on' : 'in'} ${busiest.label}.` : '.');
  const series = [['redeemed', 'Redeemed', 'chart-redeemed'], ['launched', 'Launched', 'chart-launched']];
  const box = responsive(h('div', { class: 'chart-box', id: 'per-day-chart' }), (w) => barsOverTime(w, title, summary, buckets, series, shortDay));
  return h('figure', { class: 'chart-figure' },
    h('figcaption', {}, title, unit === 'day' ? '' : ` (${days.length} days are grouped by ${unit})`),
    legend(series.map(([, label, cls]) => [cls, label])),
    box,
    tableDisclosure('per-day', `${title}, UTC`, [unit === 'day' ? 'Day' : unit === 'week' ? 'Week (from Monday)' : 'Month', 'Redeemed', 'Launched'],
      buckets.map((b) => [b.label, b.redeemed, b.launched])));
}

/** The funnel: keys → handed out → redeemed → launched, as labelled horizontal bars. */
export function funnelChart(f) {
  const steps = [['Keys', f.keys], ['Handed out', f.handed_out], ['Redeemed', f.redeemed], ['Launched', f.launched]];
  const said = steps.map(([l, v]) => `${l}: ${v === null ? 'not tracked yet' : fmt(v)}`).join(', ');
  const title = 'From keys to launches';
  const summary = `${said}.`;
  const box = responsive(h('div', { class: 'chart-box', id: 'funnel-chart' }), (width) => {
    const row = 44, labelH = 18, height = steps.length * row + 4;
    const svg = svgImage(width, height, title, summary);
    const max = Math.max(1, f.keys, ...steps.map(([, v]) => v || 0));
    steps.forEach(([label, v], i) => {
      const y0 = i * row;
      const pct = v === null || !f.keys ? '' : ` (${Math.round((v / f.keys) * 100)}%)`;
      svg.append(s('text', { x: 0, y: y0 + 14, class: 'chart-text chart-label' }, `${label}: ${v === null ? 'not tracked yet' : fmt(v)}${i ? pct : ''}`));
      if (v === null) svg.append(s('rect', { x: 0.5, y: y0 + labelH + 0.5, width: width - 1, height: 18, class: 'chart-untracked' }));
      else svg.append(s('rect', { x: 0, y: y0 + labelH, width: Math.max(v ? 2 : 0, (v / max) * width), height: 19, class: 'chart-funnel' }));
    });
    return svg;
  });
  return h('figure', { class: 'chart-figure' },
    h('figcaption', {}, title),
    box,
    tableDisclosure('funnel', title, ['Step', 'Count'], steps.map(([l, v]) => [l, v === null ? 'not tracked yet' : v])));
}

/** Redemptions per month (cancelled ones shown apart), for the billing page. */
export function monthsChart(months) {
  const redeemed = months.reduce((a, m) => a + m.redeemed, 0);
  const cancelled = months.reduce((a, m) => a + m.cancelled, 0);
  const title = `Redemptions per month, last ${plural(months.length, 'month')}`;
  const summary = `${plural(redeemed, 'redemption')} from ${months[0].month} to ${months[months.length - 1].month} (UTC), ${fmt(cancelled)} of them cancelled; this month ${fmt(months[months.length - 1].redeemed)}.`;
  const series = [['redeemed', 'Redeemed', 'chart-redeemed'], ['cancelled', 'Cancelled', 'chart-launched']];
  const buckets = months.map((m) => ({ label: m.month, redeemed: m.redeemed, cancelled: m.cancelled }));
  const box = responsive(h('div', { class: 'chart-box', id: 'months-chart' }), (w) => barsOverTime(w, title, summary, buckets, series, shortDay));
  return h('figure', { class: 'chart-figure' },
    h('figcaption', {}, title),
    legend([['chart-redeemed', 'Redeemed'], ['chart-launched', 'Cancelled']]),
    box,
    tableDisclosure('months', `${title}, UTC`, ['Month', 'Redeemed', 'Cancelled'], buckets.map((b) => [b.label, b.redeemed, b.cancelled])));
}
