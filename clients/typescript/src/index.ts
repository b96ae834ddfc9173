/**
 * Herald's API for WedSync: the types generated from Herald's OpenAPI document (`paths`,
 * `components`, in `schema.d.ts`) and a client whose every call, body and answer is checked
 * against them.
 *
 * Regenerate with `npm run generate` after `herald openapi > openapi.json`; CI fails when the
 * checked-in files differ from what Herald's code generates.
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };

type Schemas = components["schemas"];

/** The seed's `WeddingNotification`, as Herald takes it. */
export type WeddingNotification = Schemas["WeddingNotification"];
/** The seed's `CrossSystemRouting` (`POST /v1/routings`). */
export type CrossSystemRouting = Schemas["CrossSystemRouting"];
/** The seed's `RoutingResult`. */
export type RoutingResult = Schemas["RoutingResult"];
/** The seed's `IntegrationConfiguration` as Herald takes it to create an integration. */
export type IntegrationRequest = Schemas["IntegrationRequest"];
/** The seed's `IntegrationInstance`. */
export type IntegrationInstance = Schemas["IntegrationInstance"];
/** A routing rule of the organization (`/v1/routes`). */
export type Route = Schemas["Route"];
/** Every error answer: `{ error: { code, message, field? } }`. */
export type HeraldError = Schemas["ErrorBody"];

/** A client for one organization's API key; `baseUrl` is Herald's address without `/v1`. */
export function createHeraldClient(baseUrl: string, apiKey: string): Client<paths> {
  return createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
}
