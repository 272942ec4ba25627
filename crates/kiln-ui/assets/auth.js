// The credentials dialog: asked for when the API answers 401 or 403, or opened from the
// header. It resolves with {token, tenant}, or null when dismissed.

import { credentials } from './api.js';

let resolvePending = null;

export function initAuth() {
  const dialog = document.getElementById('auth-dialog');
  const form = document.getElementById('auth-form');
  const token = document.getElementById('auth-token');
  const tenant = document.getElementById('auth-tenant');
  const finish = (value) => {
    const r = resolvePending;
    resolvePending = null;
    if (dialog.open) dialog.close();
    if (r) r(value);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    finish({ token: token.value, tenant: tenant.value });
  });
  document.getElementById('auth-cancel').addEventListener('click', () => finish(null));
  // Escape closes a modal dialog by itself: treat it as a dismissal.
  dialog.addEventListener('close', () => finish(null));
}

// Shows the dialog with the reason; resolves with the credentials entered, or null.
export function askCredentials(reason) {
  const dialog = document.getElementById('auth-dialog');
  const c = credentials();
  document.getElementById('auth-token').value = c.token;
  document.getElementById('auth-tenant').value = c.tenant;
  document.getElementById('auth-reason').textContent = reason || '';
  if (resolvePending) resolvePending(null);
  return new Promise((resolve) => {
    resolvePending = resolve;
    if (!dialog.open) dialog.showModal();
    document.getElementById('auth-token').focus();
  });
}
