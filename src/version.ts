declare const __APP_VERSION__: string | undefined;

/** Injected by build.mjs; read from package.json when running from source. */
export const VERSION: string =
  typeof __APP_VERSION__ === 'string' ? __APP_VERSION__ : (require('../package.json') as { version: string }).version;
