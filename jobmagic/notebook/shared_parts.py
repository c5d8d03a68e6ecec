"""``SharedParts``: the Layout and Style widgets a panel's widgets share.

Every widget costs the kernel a ``comm_open`` message, and ipywidgets 8 gives each one its
own Layout and Style widget (two more) unless it is given one: a panel makes one of each
kind and hands it to all its widgets.
"""

from __future__ import annotations

from typing import Any

import ipywidgets
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_selection import ToggleButtonsStyle
from ipywidgets.widgets.widget_string import HTMLStyle


class SharedParts:
    """The Layout and Style widgets of one panel, each shared by all widgets of one kind.

    A Layout or Style widget may be referenced by any number of widgets, and the panel
    never changes one after it is made, so one of each is enough whatever the number of
    rows. Whoever makes the parts closes them, after the widgets that use them.
    """

    def __init__(self) -> None:
        # Takes the free width of its line and clips what does not fit. Basis 0, not
        # auto: in a row that wraps, a long summary must shrink, not push the buttons
        # onto a line of their own.
        self.grow = ipywidgets.Layout(flex="1 1 0%", width="auto", min_width="0", overflow="hidden")
        self.button = ipywidgets.Layout(flex="0 0 auto", width="auto")  # as wide as its label
        # A job's row: summary and buttons on one line; the output, a full-width item,
        # wraps onto the next one.
        self.row = ipywidgets.Layout(flex_flow="row wrap", align_items="center")
        # A full line (without side margins, which would not fit beside 100% and make the
        # row scroll sideways). The widget's own element is the scroll box: its content is
        # replaced at each update but the box stays, and column-reverse puts its scroll
        # origin at the bottom, so it follows the newest line until the user scrolls up,
        # and then keeps its distance from the bottom.
        self.output = ipywidgets.Layout(
            flex="0 0 100%",
            display="flex",
            flex_flow="column-reverse",
            align_items="stretch",
            overflow="auto",
            max_height="24em",
            margin="0.2em 0 0.4em 0",
            padding="0 2px 0 0.5em",
            border_left="3px solid #9e9e9e",
        )
        self.header = ipywidgets.Layout(align_items="center", justify_content="space-between")
        self.column = ipywidgets.Layout()  # the VBoxes' (default) layout
        self.html_style = HTMLStyle()
        self.button_style = ipywidgets.ButtonStyle()
        self.toggle_style = ToggleButtonStyle()
        self.toggles_style = ToggleButtonsStyle(button_width="auto")

    def make_button(
        self, description: str, icon: str, tooltip: str, css_class: str, **more: Any
    ) -> Any:
        """A Button of the panel's look (its shared Layout and Style), classed ``css_class``."""
        return ipywidgets.Button(
            description=description,
            icon=icon,
            tooltip=tooltip,
            layout=self.button,
            style=self.button_style,
            _dom_classes=(css_class,),
            **more,
        )

    def close(self) -> None:
        """Close every part (once no open widget uses them)."""
        for part in vars(self).values():
            part.close()
