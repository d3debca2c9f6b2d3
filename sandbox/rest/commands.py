"""Application commands, global and per guild: list, overwrite, create, get, edit, delete."""

from __future__ import annotations

import re
from typing import Any

from sandbox.components import FormErrors
from sandbox.errors import ApiError
from sandbox.rest.base import Resource, RouteSpec, path_id, unknown
from sandbox.rest.form import NOT_A_DICT, Form, permission_bits

MAX_COMMANDS = 100
COMMAND_TYPES = (1, 2, 3, 4)  # chat input, user, message, primary entry point
NAME = re.compile(r"[-_\w]{1,32}")


class Commands(Resource):
    def routes(self) -> list[RouteSpec]:
        out = []
        for scope in ("", "/guilds/{guild_id}"):
            base = "/applications/{application_id}" + scope + "/commands"
            out += [
                RouteSpec("GET", base, self.list_commands),
                RouteSpec("PUT", base, self.overwrite_commands),
                RouteSpec("POST", base, self.create_command),
                RouteSpec("GET", base + "/{command_id}", self.get_command),
                RouteSpec("PATCH", base + "/{command_id}", self.edit_command),
                RouteSpec("DELETE", base + "/{command_id}", self.delete_command),
            ]
        return out

    def _scope(self, application_id: str, guild_id: str | None) -> dict[int, Any]:
        if application_id != str(self.world.application_id):
            raise ApiError(403, 50001, "Missing Access")
        key = None if guild_id is None else self.state.guild(guild_id).id
        return self.state.commands.setdefault(key, {})

    def _read(self, form: Form) -> dict[str, Any]:
        """A command's fields, checked; problems are left in the form's errors."""
        ctype = form.choice("type", COMMAND_TYPES) or 1
        name = form.string("name", low=1, high=32, required=True)
        if ctype == 1 and isinstance(name, str) and not NAME.fullmatch(name):
            form.errors.add(
                [*form.path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        description = form.string("description", high=100, nullable=True, default="")
        options = form.data.get("options")
        if options is not None:
            if not isinstance(options, list):
                form.errors.add([*form.path, "options"], "BASE_TYPE_ARRAY", "Must be an array.")
                options = None
            elif len(options) > 25 or not all(isinstance(o, dict) for o in options):
                form.errors.add(
                    [*form.path, "options"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 0 and 25 in length, of objects.",
                )
                options = None
        permissions = form.data.get("default_member_permissions")
        if permissions is not None:
            permissions = str(
                permission_bits(
                    form.errors, [*form.path, "default_member_permissions"], permissions
                )
            )
        contexts = form.data.get("contexts")
        if contexts is not None and not (
            isinstance(contexts, list) and all(c in (0, 1, 2) for c in contexts)
        ):
            form.errors.add(
                [*form.path, "contexts"], "BASE_TYPE_ARRAY", "Must be an array of 0, 1, 2."
            )
            contexts = None
        types = form.data.get("integration_types")
        if types is not None and not (isinstance(types, list) and all(t in (0, 1) for t in types)):
            form.errors.add(
                [*form.path, "integration_types"], "BASE_TYPE_ARRAY", "Must be an array of 0, 1."
            )
            types = None
        return {
            "type": ctype,
            "name": name,
            "description": description or "",
            "options": options or [],
            "default_member_permissions": permissions,
            "dm_permission": form.boolean("dm_permission", default=True),
            "nsfw": form.boolean("nsfw", default=False),
            "integration_types": types or [0],
            "contexts": contexts,
        }

    def _command(
        self, fields: dict[str, Any], guild_id: str | None, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        cid = int(existing["id"]) if existing else self.world.ids.now()
        return {
            "id": str(cid),
            "application_id": str(self.world.application_id),
            "guild_id": guild_id,
            "name_localizations": None,
            "description_localizations": None,
            **fields,
            "version": str(self.world.ids.now()),
        }

    async def list_commands(
        self, application_id: str, guild_id: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        return list(self._scope(application_id, guild_id).values())

    async def overwrite_commands(
        self, application_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        scope = self._scope(application_id, guild_id)
        if not isinstance(body, list):
            errors = FormErrors()
            errors.add([], "BASE_TYPE_ARRAY", "Must be an array.")
            errors.raise_any()
        if len(body) > MAX_COMMANDS:
            raise ApiError(400, 30032, "Maximum number of application commands reached (100)")
        errors = FormErrors()
        read = []
        for i, item in enumerate(body):
            if not isinstance(item, dict):
                errors.add([i], "DICT_TYPE_CONVERT", NOT_A_DICT)
                continue
            form = Form(item, [i])
            form.errors = errors
            read.append(self._read(form))
        errors.raise_any()
        by_name = {(c["name"], c["type"]): c for c in scope.values()}
        fresh = [self._command(f, guild_id, by_name.get((f["name"], f["type"]))) for f in read]
        scope.clear()
        scope.update({int(c["id"]): c for c in fresh})
        return fresh

    async def create_command(
        self, application_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        scope = self._scope(application_id, guild_id)
        form = Form(body)
        fields = self._read(form)
        form.check()
        by_name = {(c["name"], c["type"]): c for c in scope.values()}
        cmd = self._command(fields, guild_id, by_name.get((fields["name"], fields["type"])))
        scope[int(cmd["id"])] = cmd
        return cmd

    def _find(self, scope: dict[int, Any], command_id: str) -> dict[str, Any]:
        found = scope.get(path_id(command_id))
        if found is None:
            raise unknown("command")
        return dict(found)

    async def get_command(
        self, application_id: str, command_id: str, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        return self._find(self._scope(application_id, guild_id), command_id)

    async def edit_command(
        self, application_id: str, command_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        scope = self._scope(application_id, guild_id)
        current = self._find(scope, command_id)
        form = Form(body, optional=True)
        form.data = {**current, **form.data}
        fields = self._read(form)
        form.check()
        cmd = self._command(fields, guild_id, current)
        scope[int(cmd["id"])] = cmd
        return cmd

    async def delete_command(
        self, application_id: str, command_id: str, guild_id: str | None = None, **_: Any
    ) -> None:
        scope = self._scope(application_id, guild_id)
        self._find(scope, command_id)
        del scope[path_id(command_id)]
