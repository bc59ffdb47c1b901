// @peculiar/x509 uses tsyringe, which refuses to load unless the Reflect metadata
// API exists. It only stores and reads constructor metadata, so this small
// WeakMap version is enough and spares a dependency. Installed only if absent.

type Meta = Map<unknown, unknown>;
const store = new WeakMap<object, Meta>();

function own(target: object, create: boolean): Meta | undefined {
  let m = store.get(target);
  if (!m && create) store.set(target, (m = new Map()));
  return m;
}

interface ReflectMetadata {
  defineMetadata(key: unknown, value: unknown, target: object): void;
  getOwnMetadata(key: unknown, target: object): unknown;
  getMetadata(key: unknown, target: object): unknown;
}

const r = Reflect as typeof Reflect & Partial<ReflectMetadata>;
if (typeof r.getMetadata !== "function") {
  const shim: ReflectMetadata = {
    defineMetadata: (key, value, target) => void own(target, true)?.set(key, value),
    getOwnMetadata: (key, target) => own(target, false)?.get(key),
    getMetadata: (key, target) => {
      for (let t: object | null = target; t; t = Object.getPrototypeOf(t) as object | null) {
        const m = own(t, false);
        if (m?.has(key)) return m.get(key);
      }
      return undefined;
    },
  };
  Object.assign(Reflect, shim);
}

export {};
