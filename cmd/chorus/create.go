package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

func newCreateCmd(root *rootOptions) *cobra.Command {
	a := &applyOptions{rootOptions: root, create: true}
	cmd := &cobra.Command{
		Use:   "create -f FILENAME",
		Short: "Create a resource from a file or from stdin",
		Long: "Create the objects of YAML or JSON manifests; unlike apply, a manifest any of\n" +
			"whose objects already exists is refused as a whole. -f takes a file, a\n" +
			"directory (its .yaml, .yml and .json files, sorted) or - for stdin, and\n" +
			"may be repeated. The subcommands create one object from flags.",
		Example: "  chorus create -f web.yaml\n  cat web.yaml | chorus create -f -\n" +
			"  chorus create deployment web --image=docker.io/example/web:1",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(a.filenames) == 0 {
				// kubectl: the complaint, then the usage, on stderr.
				fmt.Fprintf(root.errOut, "error: must specify -f FILENAME\n\n%s", cmd.UsageString())
				return &exitError{code: 1}
			}
			return a.run(cmd.Context())
		},
	}
	cmd.Flags().StringArrayVarP(&a.filenames, "filename", "f", nil, "file, directory or - (stdin) holding the manifests to create")
	cmd.AddCommand(newCreateDeploymentCmd(root))
	return cmd
}

type createDeploymentOptions struct {
	*rootOptions
	images   []string
	replicas int32
	port     int32
	dryRun   string
	output   string
}

func newCreateDeploymentCmd(root *rootOptions) *cobra.Command {
	o := &createDeploymentOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:     "deployment NAME --image=IMAGE [--replicas=N] [--port=PORT] [-- COMMAND [ARGS...]]",
		Aliases: []string{"deploy"},
		Short:   "Create a deployment with the specified name",
		Example: "  chorus create deployment web --image=docker.io/example/web:1 --replicas=3 --port=8080\n" +
			"  chorus create deployment job --image=busybox -- sleep 3600\n" +
			"  chorus create deployment web --image=nginx --dry-run=client -o yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command, err := splitNameAndCommand(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			return o.run(cmd.Context(), name, command, root.namespaceExplicit(cmd))
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.images, "image", nil, "image of the container (repeatable: one container each)")
	f.Int32VarP(&o.replicas, "replicas", "r", 1, "number of replicas")
	f.Int32Var(&o.port, "port", -1, "port the containers expose")
	f.StringVar(&o.dryRun, "dry-run", "none", `"none" or "client": with client, print the object instead of creating it`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.output, "output", "o", "", "output format: json, yaml or name")
	return cmd
}

// splitNameAndCommand reads "NAME [-- COMMAND ARGS...]".
func splitNameAndCommand(args []string, dash int) (string, []string, error) {
	if len(args) == 0 || dash == 0 {
		return "", nil, errors.New("NAME is required")
	}
	if dash < 0 {
		dash = len(args)
	}
	if dash > 1 {
		return "", nil, fmt.Errorf("exactly one NAME is required, got %d", dash)
	}
	return args[0], args[dash:], nil
}

// buildDeployment makes the apps/v1 Deployment kubectl's create deployment
// makes: labels app=NAME, one container per image named after the image.
func (o *createDeploymentOptions) buildDeployment(name, ns string, command []string) (*api.Deployment, error) {
	if len(o.images) == 0 {
		return nil, errors.New(`required flag(s) "image" not set`)
	}
	if len(o.images) > 1 && len(command) > 0 {
		return nil, errors.New("cannot specify multiple --image options and command")
	}
	if o.replicas < 0 {
		return nil, fmt.Errorf("--replicas must be greater than or equal to 0, got %d", o.replicas)
	}
	labels := map[string]string{"app": name}
	replicas := o.replicas
	var containers []api.Container
	used := map[string]bool{}
	for i, image := range o.images {
		c := api.Container{Name: containerNameFor(image), Image: image}
		if used[c.Name] {
			c.Name = fmt.Sprintf("%s-%d", c.Name, i)
		}
		used[c.Name] = true
		if len(command) > 0 {
			c.Command = command
		}
		if o.port >= 0 {
			c.Ports = []api.ContainerPort{{ContainerPort: o.port}}
		}
		containers = append(containers, c)
	}
	return &api.Deployment{
		TypeMeta: api.TypeMeta{APIVersion: "apps/v1", Kind: api.KindDeployment},
		Metadata: api.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: api.DeploymentSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: labels},
			Template: api.PodTemplateSpec{
				Metadata: api.ObjectMeta{Labels: labels},
				Spec:     api.PodSpec{Containers: containers},
			},
		},
	}, nil
}

// containerNameFor names a container after its image as kubectl does:
// "docker.io/example/web:1" -> "web", with _ and . made -.
func containerNameFor(image string) string {
	name := image[strings.LastIndex(image, "/")+1:]
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.Index(name, ":"); i >= 0 {
		name = name[:i]
	}
	return strings.NewReplacer("_", "-", ".", "-").Replace(name)
}

func (o *createDeploymentOptions) run(ctx context.Context, name string, command []string, nsExplicit bool) error {
	switch o.dryRun {
	case "none", "client":
	case "server":
		return errors.New(`--dry-run=server is not supported: use "client" or "none"`)
	default:
		return fmt.Errorf(`invalid dry-run value (%s). Must be "none" or "client"`, o.dryRun)
	}
	if err := validateOutput(o.output, "", "json", "yaml", "name"); err != nil {
		return err
	}
	ns := o.namespace()
	objNS := ""
	if nsExplicit {
		objNS = ns
	}
	dep, err := o.buildDeployment(name, objNS, command)
	if err != nil {
		return err
	}
	if o.dryRun == "client" {
		switch o.output {
		case "json":
			return printJSON(o.out, dep)
		case "yaml":
			return printYAML(o.out, dep)
		case "name":
			_, err := fmt.Fprintf(o.out, "deployment.apps/%s\n", name)
			return err
		}
		_, err := fmt.Fprintf(o.out, "deployment.apps/%s created (dry run)\n", name)
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	dep.Metadata.Namespace = ns
	var resp applyResponse
	if err := c.sendJSON(ctx, http.MethodPost, apiPath("namespaces", url.PathEscape(ns), "deployments"), dep, &resp); err != nil {
		return err
	}
	printWarnings(o.errOut, resp.Warnings)
	if o.output == "name" {
		for _, r := range resp.Results {
			fmt.Fprintf(o.out, "%s/%s\n", kindName(r.Kind), r.Name)
		}
		return nil
	}
	if o.output == "json" || o.output == "yaml" {
		obj, err := getObject(ctx, c, resourceTypeOf("deployments"), ns, name)
		if err != nil {
			return err
		}
		return printObjects(o.out, o.output, []object{obj}, true)
	}
	printResults(o.out, resp.Results, false)
	return nil
}
