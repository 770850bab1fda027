// Two projects: the whole suite runs against Express 5, and again against Express 4
// (the `express` import is remapped), because the router must work in both.
const base = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/spec/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.spec.json' }],
  },
};

module.exports = {
  testTimeout: 30000,
  projects: [
    { ...base, displayName: 'express5' },
    {
      ...base,
      displayName: 'express4',
      moduleNameMapper: { '^express$': 'express4' },
      // Storage and end-to-end suites do not depend on the Express major; one run of them is enough.
      testPathIgnorePatterns: ['/node_modules/', '/spec/e2e/', '/spec/storage-', '/spec/crash\\.spec'],
    },
  ],
};
