package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	sigsyaml "sigs.k8s.io/yaml"
)

// plainFolder is what scanPlain found in a folder without a kustomization.
type plainFolder struct {
	// resources are the files with objects, and the subfolders with a
	// kustomization, relative to the folder, in lexical order: what a
	// generated kustomization lists.
	resources []string
	// direct is true when no subfolder has a kustomization and every
	// document is one plainObject could build as kustomize would; objects
	// are then the folder's objects, in kustomize's order.
	direct  bool
	objects []*unstructured.Unstructured
}

// scanPlain reads the plain folder dir, and everything below it, the way a
// generated kustomization lists it:
//
//   - every *.yaml and *.yml file below dir, in lexical order;
//   - hidden files and directories (".git", ".github", ...) are skipped;
//   - a subdirectory with its own kustomization is listed as a resource
//     folder and not descended into;
//   - symlinked directories are not followed (symlinked files are, and must
//     stay inside the root);
//   - every file goes through decodeManifests, as a resource named in a
//     kustomization does: a document that is not a Kubernetes object (no
//     apiVersion, kind or metadata.name) is an error naming the file,
//     rather than being skipped, because a manifest that lost its kind by
//     mistake must not silently disappear from the render (the sync would
//     prune its object). Empty documents are ignored; files, and the
//     objects in them, are held to the Options limits;
//   - a folder with no manifest at all is an error, for the same reason.
//
// While nothing needs kustomize, it also builds the objects (plainObject),
// so that the common folder of plain manifests needs no kustomize build.
func scanPlain(fsys *rootFS, dir string) (*plainFolder, error) {
	folder := &plainFolder{direct: true}
	objects := 0
	each := func(doc *yaml.Node) {
		if !folder.direct {
			return
		}
		obj, ok := plainObject(doc)
		if !ok {
			folder.direct, folder.objects = false, nil
			return
		}
		folder.objects = append(folder.objects, obj)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if kustomizationFile(fsys, p) != "" {
				folder.resources = append(folder.resources, filepath.ToSlash(rel))
				folder.direct, folder.objects = false, nil
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 && fsys.IsDir(p) {
			return nil
		}
		data, err := fsys.ReadFile(p)
		var rerr *Error
		if errors.As(err, &rerr) {
			return rerr
		}
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		if folder.direct && !plainSeparators(data) {
			folder.direct, folder.objects = false, nil
		}
		objs, err := decodeManifests(data, fsys.lim.objects-objects, each)
		switch {
		case errors.Is(err, errNotObject):
			err = fmt.Errorf("%w; move the file out of the folder or add a kustomization.yaml", err)
		case errors.Is(err, errTooManyObjects):
			err = tooManyObjects(fsys.lim.objects)
		}
		if err != nil {
			return &Error{Path: fsys.rel(p), Err: err}
		}
		objects += len(objs)
		// kustomize reads the file again, from rootFS's cache: it need not
		// be decoded twice.
		fsys.counts[p], fsys.parsed[p] = len(objs), true
		if len(objs) > 0 {
			folder.resources = append(folder.resources, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return nil, err
		}
		return nil, &Error{Path: fsys.rel(dir), Err: err}
	}
	if len(folder.resources) == 0 {
		return nil, &Error{Path: fsys.rel(dir), Err: errors.New("no kustomization and no Kubernetes manifests (*.yaml, *.yml) in this folder")}
	}
	return folder, nil
}

// generateKustomization gives the plain folder dir a kustomization listing
// what scanPlain found there, laid over the checkout in memory (never
// written to disk).
func generateKustomization(fsys *rootFS, dir string, folder *plainFolder) error {
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: folder.resources,
	}
	data, err := sigsyaml.Marshal(k)
	if err != nil {
		return err
	}
	return fsys.addVirtual(filepath.Join(dir, konfig.DefaultKustomizationFileName()), data)
}
