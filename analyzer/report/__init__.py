"""The weekly capacity report (`fleetwise report`, docs/report.md): week.py parses ISO weeks; runs.py picks the
analyze run; utilization.py, gpu_hours.py, outlook.py and alerts.py gather the sections; gather.py holds them
together; figures.py, html.py and pdf.py render; build.py writes the files."""
