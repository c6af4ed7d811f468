// Runs graphql-http's serverAudits against URL with a bearer token; prints every audit that is not ok.
// Exit 0 only when every audit is ok (no errors, no warnings, no notices).
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  counts[result.status] = (counts[result.status] || 0) + 1;
  if (result.status !== 'ok') console.log(`${result.status} ${audit.id} ${audit.name}: ${result.reason}`);
}
console.log(`audits: ${counts.ok} ok, ${counts.notice} notices, ${counts.warn} warnings, ${counts.error} errors`);
process.exit(counts.ok > 0 && counts.notice + counts.warn + counts.error === 0 ? 0 : 1);
