"""Reading an admin list page as a person does: its column headers and a row's cells, tags stripped."""

import re


def results(html: str) -> str:
    """The changelist's results table."""
    start = html.index('<table id="result_list">')
    return html[start : html.index("</table>", start)]


def headers(html: str) -> list[str]:
    """The column headers of the results table, as a person reads them."""
    head = results(html).split("</thead>")[0]
    cells = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', head, flags=re.S)
    names = [re.sub(r"<[^>]+>", "", cell).strip().lower() for cell in cells]
    return [name for name in names if name]  # not the select-all checkbox


def row_of(html: str, version: str) -> list[str]:
    """The cells of ``version``'s row, tags stripped."""
    for row in re.findall(r"<tr>(.*?)</tr>", results(html), flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        if version in cells:
            return cells[1:] if cells[0] == "" else cells  # after the checkbox, where rows have one
    raise AssertionError(f"no row for {version}")


def visible(html: str) -> str:
    """What a person reads of ``html``: the text, without tags (and so without links' and checkboxes' ids)."""
    return re.sub(r"<[^>]+>", " ", html)
