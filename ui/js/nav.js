// The page's URLs: which view a link opens, and moving between views without reloading.

/** The page's URL for a view: `?repository=…&reference=…&platform=…` (and `q`, `after` for lists). */
export function href(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== '') query.set(key, value);
  const text = query.toString();
  return text ? `?${text}` : location.pathname;
}

/** Goes to `url` as a new history entry (or in place of the current one); the shell renders it. */
export function navigate(url, { state = null, replace = false } = {}) {
  if (replace) history.replaceState(state, '', url);
  else history.pushState(state, '', url);
  window.dispatchEvent(new Event('ui:navigate'));
}
