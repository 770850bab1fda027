/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4): it throws on any
 * line the format does not allow, so a test that reads a scrape with it also checks the scrape.
 */

/** One sample: its metric name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed scrape: the families' types and every sample. */
export interface Scrape {
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample named `name` whose labels include `labels`; summed when several match. */
  value(name: string, labels?: Record<string, string>): number;
}

const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SAMPLE = new RegExp(`^(${METRIC_NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

export function parsePrometheusText(text: string): Scrape {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, index) => {
      const fail = (why: string) => {
        throw new Error(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
      };
      if (line.startsWith('#')) {
        const help = new RegExp(`^# HELP (${METRIC_NAME}) (.*)$`).exec(line);
        const type = new RegExp(`^# TYPE (${METRIC_NAME}) (\\w+)$`).exec(line);
        if (help) {
          if (helps.has(help[1])) fail('a second HELP for one family');
          helps.add(help[1]);
        } else if (type) {
          if (!TYPES.has(type[2])) fail('an unknown type');
          if (types.has(type[1])) fail('a second TYPE for one family');
          if (samples.some((sample) => familyOf(sample.name, types) === type[1])) fail('TYPE after the family’s samples');
          types.set(type[1], type[2]);
        } else if (!/^# /.test(line) && line !== '#') fail('a malformed comment');
        return;
      }
      if (line.trim() === '') return;
      const match = SAMPLE.exec(line);
      if (!match) return fail('not a sample line');
      const [, name, labelText = '', valueText] = match;
      const labels = parseLabels(labelText, fail);
      const value = parseValue(valueText, fail);
      const family = familyOf(name, types);
      if (!types.has(family)) fail('a sample whose family has no TYPE');
      if (types.get(family) === 'histogram' && name === family) fail('a histogram sample without _bucket, _sum or _count');
      if (name.endsWith('_bucket') && types.get(family) === 'histogram' && labels.le === undefined) fail('a bucket without le');
      const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
      if (seen.has(key)) fail('a duplicate series');
      seen.add(key);
      samples.push({ name, labels, value });
    });
  checkHistograms(types, samples);
  return {
    types,
    samples,
    value(name, labels = {}) {
      const matching = samples.filter((sample) => sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v));
      return matching.reduce((sum, sample) => sum + sample.value, 0);
    },
  };
}

/** The family a sample belongs to: a histogram's name for its `_bucket`, `_sum` and `_count`. */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of HISTOGRAM_SUFFIXES) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && (types.get(base) === 'histogram' || types.get(base) === 'summary')) return base;
  }
  return name;
}

function parseLabels(text: string, fail: (why: string) => never): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest !== '') {
    const match = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
    if (!match || !LABEL_NAME.test(match[1])) fail('a malformed label');
    const [whole, name, escaped, comma] = match!;
    if (name in labels) fail('a repeated label');
    labels[name] = escaped.replace(/\\(.)/g, (_all, char: string) => (char === 'n' ? '\n' : char));
    rest = rest.slice(whole.length);
    if (!comma && rest !== '') fail('labels not separated by commas');
  }
  return labels;
}

function parseValue(text: string, fail: (why: string) => never): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) fail('a malformed value');
  return Number(text);
}

/** Each histogram series: buckets that never decrease, ending in `+Inf` equal to `_count`. */
function checkHistograms(types: Map<string, string>, samples: Sample[]): void {
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const sample of samples.filter((s) => s.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = sample.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      series.set(key, [...(series.get(key) ?? []), sample]);
    }
    for (const [key, buckets] of series) {
      const bounds = buckets.map((bucket) => (bucket.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(bucket.labels.le)));
      for (let i = 1; i < buckets.length; i++) {
        if (!(bounds[i] > bounds[i - 1]) || buckets[i].value < buckets[i - 1].value) throw new Error(`${family} ${key}: buckets out of order`);
      }
      if (bounds.at(-1) !== Number.POSITIVE_INFINITY) throw new Error(`${family} ${key}: no +Inf bucket`);
      const labels = Object.fromEntries(JSON.parse(key) as [string, string][]);
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort()));
      if (!count || count.value !== buckets.at(-1)!.value) throw new Error(`${family} ${key}: _count differs from the +Inf bucket`);
    }
  }
}
