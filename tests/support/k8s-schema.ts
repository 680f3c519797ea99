// Validates Kubernetes objects against the official OpenAPI schema, strictly:
//  1. kubernetes-models (validators compiled from the Kubernetes OpenAPI definitions) checks types, required
//     fields, enums and formats — but, like the schema itself, it ignores fields it does not know;
//  2. so, like `kubectl apply --validate=strict`, every field is also looked up in the model definitions that
//     @kubernetes/client-node (the official JavaScript client, generated from the same OpenAPI document)
//     ships as `attributeTypeMap`s; a field neither knows (a typo, a field at the wrong level) is an error.
// Both packages are ESM-only, hence the dynamic imports from this CommonJS module.

/** What a model class of @kubernetes/client-node exposes about its JSON fields. */
interface AttributeType {
  baseName: string;
  type: string;
}
interface ClientModel {
  getAttributeTypeMap(): AttributeType[];
}
/** A kubernetes-models class: constructed from plain data; validate() throws with `errors` on failure. */
type SchemaModel = new (data: unknown) => { validate(): void };

// Types whose content the client's model map does not describe field by field.
const OPAQUE_TYPES = new Set(["string", "number", "boolean", "Date", "any", "object", "IntOrString", "RuntimeRawExtension"]);

let clientModels: Promise<Record<string, unknown>> | undefined;
function loadClientModels(): Promise<Record<string, unknown>> {
  clientModels ??= import("@kubernetes/client-node") as Promise<Record<string, unknown>>;
  return clientModels;
}

/** `apps/v1` + `DaemonSet` → the kubernetes-models class. */
async function schemaModel(apiVersion: string, kind: string): Promise<SchemaModel> {
  // Module paths mirror API versions: kubernetes-models/v1, kubernetes-models/apps/v1, ...
  const module = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, unknown>;
  const model = module[kind];
  if (typeof model !== "function") throw new Error(`kubernetes-models has no ${kind} in ${apiVersion}`);
  return model as SchemaModel;
}

/** The client's class name for a kind: `apps/v1` + `DaemonSet` → `V1DaemonSet`. */
function clientModelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split("/").pop() ?? apiVersion;
  return `${version[0].toUpperCase()}${version.slice(1)}${kind}`;
}

function unknownFields(value: unknown, type: string, at: string, models: Record<string, unknown>, problems: string[]): void {
  if (value === undefined || value === null || OPAQUE_TYPES.has(type)) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((item, index) => unknownFields(item, array[1], `${at}[${index}]`, models, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === "object") {
      for (const [key, item] of Object.entries(value)) unknownFields(item, map[1], `${at}.${key}`, models, problems);
    }
    return;
  }
  const model = models[type] as Partial<ClientModel> | undefined;
  if (typeof model?.getAttributeTypeMap !== "function") throw new Error(`no model definition for type ${type} at ${at}`);
  if (typeof value !== "object" || Array.isArray(value)) return; // a type error: reported by the schema check
  const fields = new Map(model.getAttributeTypeMap().map((attribute) => [attribute.baseName, attribute.type]));
  for (const [key, item] of Object.entries(value)) {
    const fieldType = fields.get(key);
    const path = at ? `${at}.${key}` : key;
    if (fieldType === undefined) problems.push(`${path}: unknown field "${key}"`);
    else unknownFields(item, fieldType, path, models, problems);
  }
}

/**
 * Problems with one object (empty when valid), each prefixed with `Kind/name` and the field path.
 * Rejects objects without apiVersion/kind.
 */
export async function schemaProblems(object: unknown): Promise<string[]> {
  const manifest = object as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  if (typeof manifest?.apiVersion !== "string" || typeof manifest.kind !== "string") {
    return ["object has no apiVersion/kind"];
  }
  const { apiVersion, kind } = manifest;
  const label = `${kind}/${String(manifest.metadata?.name ?? "?")}`;
  const problems: string[] = [];

  const Model = await schemaModel(apiVersion, kind);
  try {
    new Model(object).validate();
  } catch (error) {
    const details = (error as { errors?: { instancePath: string; message?: string }[] }).errors;
    if (!details) throw error;
    for (const detail of details) problems.push(`${detail.instancePath || "/"}: ${detail.message ?? "invalid"}`);
  }

  const models = await loadClientModels();
  unknownFields(object, clientModelName(apiVersion, kind), "", models, problems);
  return problems.map((problem) => `${label}: ${problem}`);
}

/** Throws one error listing every problem of every object. */
export async function assertValidManifests(objects: readonly unknown[]): Promise<void> {
  const problems = (await Promise.all(objects.map(schemaProblems))).flat();
  if (problems.length > 0) throw new Error(`invalid Kubernetes objects:\n  ${problems.join("\n  ")}`);
}
