/**
 * The environment variable that names the ledger's store. In a module of its own so the CLI can
 * word its --store flag without loading a SQL driver (every command's help would pay for it).
 */
export const STORE_ENV = "LABSWEEP_STORE";
