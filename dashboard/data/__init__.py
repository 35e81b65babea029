"""Data access for the pages: pure functions from a Reader (agents.query) or a saved analyze run
(analyzer.state) to pandas frames, with no Dash in sight, so each is tested on frames with known values."""
