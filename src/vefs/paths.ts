// Paths inside a layer are relative to its root, "/"-separated, with no
// leading slash; "" is the root. They come from names the kernel already
// split, so no component is "", "." or "..".

export function join(parent: string, name: string): string {
  return parent === '' ? name : `${parent}/${name}`;
}

export function split(rel: string): { parent: string; name: string } {
  const i = rel.lastIndexOf('/');
  return i < 0 ? { parent: '', name: rel } : { parent: rel.slice(0, i), name: rel.slice(i + 1) };
}

/** A binding's absolute path ("/a/b") as components. */
export function components(path: string): string[] {
  return path.split('/').filter((c) => c !== '');
}

export function isInside(rel: string, ancestor: string): boolean {
  return ancestor === '' || rel === ancestor || rel.startsWith(`${ancestor}/`);
}
