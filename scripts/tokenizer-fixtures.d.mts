// Types of scripts/tokenizer-fixtures.mjs, for the test suites that import it.
export declare const TOKENIZER_FIXTURE_DIR: string;
export declare const TOKENIZER_FIXTURES: Record<string, { spec: string; integrity: string; files: Record<string, string> }>;
/** Makes sure every fixture is in place; returns name → its directory. */
export declare function ensureTokenizerFixtures(): Record<string, string>;
