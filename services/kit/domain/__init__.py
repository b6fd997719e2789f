"""Plain-Python values every domain uses: errors, money, ids, time, validation."""
