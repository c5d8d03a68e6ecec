"""Text for people: terminal output as a terminal shows it, as HTML, and how jobs read."""
