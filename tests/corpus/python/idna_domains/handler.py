# idna: IDNA 2008 encoding and decoding, and the errors for invalid labels.
import idna


def handler(ctx):
    out = {}
    for name in ctx.bodyAsJson()["domains"]:
        try:
            ascii_form = idna.encode(name, uts46=True).decode("ascii")
            out[name] = {"ascii": ascii_form, "back": idna.decode(ascii_form)}
        except idna.IDNAError as e:
            out[name] = {"error": type(e).__name__}
    ctx.json(out)
