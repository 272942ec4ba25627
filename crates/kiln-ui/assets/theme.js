// Light and dark themes: the default follows prefers-color-scheme, a choice made with the
// toggle is kept in localStorage. The theme is the `data-theme` attribute of <html>, which
// the CSS variables and the canvases (through `onThemeChange`) follow.

const KEY = 'kiln.theme';
const listeners = [];

function stored() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function currentTheme() {
  return document.documentElement.dataset.theme === 'dark' ? 'dark' : 'light';
}

function apply(theme) {
  document.documentElement.dataset.theme = theme;
  const button = document.getElementById('theme-toggle');
  if (button) {
    button.setAttribute('aria-pressed', String(theme === 'dark'));
    button.title = theme === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme';
  }
  for (const fn of listeners) fn(theme);
}

export function onThemeChange(fn) {
  listeners.push(fn);
}

export function initTheme() {
  const media = window.matchMedia('(prefers-color-scheme: dark)');
  const initial = stored() || (media.matches ? 'dark' : 'light');
  apply(initial);
  // Follow the system while the user has not chosen.
  media.addEventListener('change', (e) => {
    if (!stored()) apply(e.matches ? 'dark' : 'light');
  });
  document.getElementById('theme-toggle').addEventListener('click', () => {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    try {
      localStorage.setItem(KEY, next);
    } catch {
      // Not remembered, still applied.
    }
    apply(next);
  });
}

// A CSS variable of the current theme (canvases draw with the same colours as the page).
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
