// Globals of the chat page (www/app.js) beyond TypeScript's DOM lib.
interface Window {
  /** The page's state, for the end-to-end tests (tests/browser). */
  __app: unknown;
}
