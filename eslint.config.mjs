import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
      // WebSocket's type is merged with ConnectionHandlers (lib/connection/handlers.ts), whose
      // methods installHandlers() puts on its prototype: methods, never fields the class would
      // have to initialise, which is what this rule guards against.
      '@typescript-eslint/no-unsafe-declaration-merging': 'off',
    },
  },
  {
    // In Node 20 the global Buffer is an accessor on globalThis: every use calls a getter
    // (about 14 ns each for Buffer.isBuffer in a hot loop). The library imports it instead.
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', { name: 'Buffer', message: "import { Buffer } from 'node:buffer' (the global is a getter)" }],
    },
  },
);
