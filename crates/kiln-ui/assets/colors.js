// Frame colours: by package for a single flame graph, by growth or shrinkage for a diff.
// Pure: no DOM; the theme is passed in.

// Warm hues for code (as flame graphs traditionally are), a few cooler ones so neighbouring
// packages differ. Values are [hue, saturation%, lightness%] for the light theme.
const PALETTE = [
  [14, 80, 66], [28, 85, 62], [40, 85, 58], [50, 80, 55], [8, 70, 70], [330, 55, 72],
  [190, 50, 62], [160, 45, 58], [265, 45, 72], [210, 55, 68], [90, 45, 58], [0, 65, 74],
];

function hash(text) {
  // FNV-1a, 32 bits: stable across sessions, so a package keeps its colour.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// The package of a function name: Go `regexp/syntax.(*parser).op` → `regexp/syntax`,
// `main.run` → `main`, Java `java.util.HashMap.get` → `java`, `java/util/HashMap.get` →
// `java/util/HashMap`, C++ `std::vector<int>::push_back` → `std`.
export function packageOf(name) {
  // Only what precedes a parameter list, generics or a space can be a package path.
  const cut = name.search(/[(<\s]/);
  const scope = cut >= 0 ? name.slice(0, cut) : name;
  const slash = scope.lastIndexOf('/');
  const head = /^[^.:]*/.exec(scope.slice(slash + 1))[0];
  return scope.slice(0, slash + 1) + head;
}

export function frameColor(name, dark) {
  const [h, s, l] = PALETTE[hash(packageOf(name)) % PALETTE.length];
  return dark ? `hsl(${h} ${s - 15}% ${l - 22}%)` : `hsl(${h} ${s}% ${l}%)`;
}

// The colour of a diff frame from its relative change (see tree.relativeChange): red for
// growth, green for shrinkage, the stronger the larger the change, saturating at ±100%.
// Changes under 1% count as none.
export function diffColor(change, dark) {
  const neutral = dark ? [92, 96, 104] : [200, 203, 208];
  const red = dark ? [214, 62, 62] : [232, 72, 72];
  const green = dark ? [46, 160, 90] : [60, 184, 104];
  let t;
  let target;
  if (change === Infinity) {
    t = 1;
    target = red;
  } else if (change > 0.01) {
    t = Math.min(1, change);
    target = red;
  } else if (change < -0.01) {
    t = Math.min(1, -change);
    target = green;
  } else {
    return `rgb(${neutral.join(',')})`;
  }
  // A floor so that even small changes are visible.
  t = 0.25 + 0.75 * t;
  const mix = neutral.map((c, k) => Math.round(c + (target[k] - c) * t));
  return `rgb(${mix.join(',')})`;
}

// Series colours for grouped time series, distinguishable in both themes.
export const SERIES_COLORS = [
  '#4f7cff', '#f28c28', '#2bb673', '#e5484d', '#a66cff', '#00a3bf', '#d6a100', '#ff6fa8',
  '#7a8b99', '#5cc8ff',
];
