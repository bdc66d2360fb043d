# attrs: classes with converters, validators, defaults, frozen instances, evolve
# and asdict.
import attrs


@attrs.define(order=True)
class Item:
    name: str = attrs.field(converter=str.strip)
    qty: int = attrs.field(converter=int, validator=attrs.validators.ge(1))
    tags: list = attrs.field(factory=list)


@attrs.frozen
class Order:
    id: str
    items: list


def handler(ctx):
    data = ctx.bodyAsJson()
    items = sorted(Item(**i) for i in data["items"])
    errors = []
    for bad in data["invalid"]:
        try:
            Item(**bad)
        except (ValueError, TypeError) as e:
            errors.append(type(e).__name__)
    order = Order(id=data["id"], items=items)
    try:
        order.id = "changed"
    except attrs.exceptions.FrozenInstanceError:
        errors.append("frozen")
    ctx.json({
        "order": attrs.asdict(order),
        "evolved": attrs.asdict(attrs.evolve(items[0], qty=99)),
        "fields": [f.name for f in attrs.fields(Item)],
        "repr": repr(items[0]),
        "errors": errors,
    })
