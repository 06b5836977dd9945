#!/usr/bin/env node
import '../dist/mnc.mjs';
