"""The notebook side: the ``%job`` magics, how jobs display, the widget panel."""
