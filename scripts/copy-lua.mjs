// Copies the Lua scripts next to the compiled JavaScript so dist/ is self-contained.
import { cpSync } from 'node:fs';

cpSync('src/redis/lua', 'dist/src/redis/lua', { recursive: true });
