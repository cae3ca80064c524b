import { describe, expect, it } from 'vitest';
import { Scripts } from '../../../src/redis/scripts.js';

describe('Lua scripts', () => {
  it('resolve their includes, nested ones too, each once, before any code of their own', () => {
    for (const [name, def] of Object.entries(Scripts)) {
      expect(def.lua, name).not.toMatch(/^--@include/m);
      const functions = [...def.lua.matchAll(/^local function (\w+)/gm)].map((m) => m[1]);
      expect(new Set(functions).size, `${name} defines a function twice`).toBe(functions.length);
    }
    // closeWindows names streamIds, and so do frontier and eventTime: it is in the script once.
    const close = Scripts.closeWindows.lua;
    expect(close.match(/^local function idParts/gm)).toHaveLength(1);
    expect(close.indexOf('local function idParts')).toBeLessThan(
      close.indexOf('local function appliedFrontier'),
    );
    expect(close.indexOf('local function entryMinEventTime')).toBeLessThan(close.indexOf('local rcall'));
  });
});
